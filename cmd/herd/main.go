// Command herd installs and refreshes Linux clusters over the network; see
// 'herd help'. Installed under the names dolly, dollyS or dollyC it takes
// those programs' command lines.
package main

import (
	"os"

	"github.com/herdproject/herd/cmd/internal/cli"
)

func main() { cli.Exec(cli.ByName(os.Args[0])) }
