// etcd for meshguard's end-to-end tests, built from go.etcd.io/etcd/server/v3
// at the version the pinned Kubernetes release requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
