//go:build !linux

package loadgen

import (
	"context"
	"errors"
)

func (r *Run) startEventLoop(context.Context) error {
	return errors.New("loadgen: EventLoop needs Linux (epoll and timerfd); leave it unset to use the goroutine client")
}
