// Command gantry-logdriver is the binary log driver that containerd's shim
// starts next to every container: it copies the container's stdout and
// stderr into the instance's rotated log file. It is the same code as the
// hidden `gantry __log-driver` command, in a 2 MB binary that starts in
// about a millisecond instead of the 15–25 ms the whole gantry binary
// spends in package initialisation. The shim waits for the driver before
// it runs the container, so that start-up is on every deploy's path; see
// docs/adr/0007-log-driver-binary.md.
//
// gantry uses it when it lies next to the gantry binary and reports the
// same version; otherwise gantry falls back to its own __log-driver.
package main

import (
	"fmt"
	"os"

	"github.com/gantry-dev/gantry/internal/logfile"
)

// version is set by the build (make build) to match gantry's.
var version = "dev"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(version)
		return
	}
	logfile.RunDriver()
}
