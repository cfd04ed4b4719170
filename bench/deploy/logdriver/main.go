// Command logdriver is Gantry's binary log driver (logfile.RunDriver) in a
// binary of its own, without the rest of gantry linked in. The deploy
// benchmark runs it next to the full gantry binary to show what the log
// driver's start-up costs on the path from create to running: the shim
// waits for the driver to signal ready before it runs the container.
package main

import "github.com/gantry-dev/gantry/internal/logfile"

func main() { logfile.RunDriver() }
