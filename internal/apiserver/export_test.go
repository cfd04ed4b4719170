package apiserver

import "time"

// SetBodyTimeout sets how long a request body may take to arrive, until
// the test ends.
func SetBodyTimeout(cleanup func(func()), d time.Duration) {
	old := bodyTimeout
	bodyTimeout = d
	cleanup(func() { bodyTimeout = old })
}

// SetWatchHeartbeat sets how often an idle watch gets a BOOKMARK, until
// the test ends.
func SetWatchHeartbeat(cleanup func(func()), d time.Duration) {
	old := watchHeartbeat
	watchHeartbeat = d
	cleanup(func() { watchHeartbeat = old })
}

// SetWatchWriteTimeout sets how long one write of a stream may take,
// until the test ends.
func SetWatchWriteTimeout(cleanup func(func()), d time.Duration) {
	old := watchWriteTimeout
	watchWriteTimeout = d
	cleanup(func() { watchWriteTimeout = old })
}

// SetWatchRechecked calls f with the user and result of each re-check of
// a watch's caller, until the test ends. Set it before the server starts.
func SetWatchRechecked(cleanup func(func()), f func(user string, err error)) {
	old := watchRechecked
	watchRechecked = f
	cleanup(func() { watchRechecked = old })
}
