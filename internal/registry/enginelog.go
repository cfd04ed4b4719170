package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// The distribution engine logs through logrus's standard logger, and its
// context helpers for choosing another logger are internal to it. Left
// alone it prints a line per request on stderr. Other users of the
// standard logger share the process (containerd's client logs through it
// too), so instead of silencing logrus the registry wraps its formatter
// once: entries that come from the engine, which all carry the
// "go.version" field the engine's base logger sets, are forwarded to the
// registry's slog logger (request chatter at debug, answers with a 5xx
// status at warn) and printed nowhere else; every other entry is formatted as
// before.

var (
	engineLogOnce sync.Once
	engineLog     atomic.Pointer[slog.Logger]
)

func routeEngineLogs(log *slog.Logger) {
	engineLog.Store(log)
	engineLogOnce.Do(func() {
		std := logrus.StandardLogger()
		std.SetFormatter(&engineFormatter{next: std.Formatter})
	})
}

type engineFormatter struct{ next logrus.Formatter }

// engineFields are the engine's entry fields worth keeping.
var engineFields = []string{"err.code", "err.message", "err.detail", "error", "http.request.method", "http.request.uri", "http.response.status", "vars.name"}

func (f *engineFormatter) Format(e *logrus.Entry) ([]byte, error) {
	if _, fromEngine := e.Data["go.version"]; !fromEngine {
		return f.next.Format(e)
	}
	log := engineLog.Load()
	if log == nil || e.Level > logrus.WarnLevel {
		return nil, nil
	}
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.FatalLevel:
		level = slog.LevelError
	case e.Level == logrus.ErrorLevel:
		// The engine logs every refused request at error level, a
		// client's wrong digest as much as a failing disk; its closing
		// "response completed" line carries the status, so warn on
		// that line when the status says the failure was the server's.
		if status, ok := e.Data["http.response.status"].(int); ok && status >= 500 {
			level = slog.LevelWarn
		}
	}
	ctx := context.Background()
	if !log.Enabled(ctx, level) {
		return nil, nil
	}
	attrs := make([]any, 0, 2*len(engineFields))
	for _, k := range engineFields {
		if v, ok := e.Data[k]; ok {
			attrs = append(attrs, k, fmt.Sprint(v))
		}
	}
	log.Log(ctx, level, "registry engine: "+e.Message, attrs...)
	return nil, nil
}
