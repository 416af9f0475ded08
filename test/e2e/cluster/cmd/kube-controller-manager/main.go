// kube-controller-manager for meshguard's end-to-end tests, built from the
// pinned k8s.io/kubernetes module (same main as k8s' cmd/kube-controller-manager).
// The suite runs it so that Deployments become ReplicaSets and Pods through the
// apiserver, as in a real cluster.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
