package main

import (
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// maybeProfile writes a CPU profile of the gantry role to $CPUPROFILE
// until SIGTERM, to see where the proxy spends its time under wrk.
func maybeProfile() {
	path := os.Getenv("CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	pprof.StartCPUProfile(f)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-ch
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(0)
	}()
}
