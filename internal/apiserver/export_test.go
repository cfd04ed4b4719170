package apiserver

import "time"

// SetBodyTimeout sets how long a request body may take to arrive, until
// the test ends.
func SetBodyTimeout(cleanup func(func()), d time.Duration) {
	old := bodyTimeout
	bodyTimeout = d
	cleanup(func() { bodyTimeout = old })
}
