// Package netns runs test code inside named network namespaces (made with
// `ip netns add`), so tests can open real sockets in "pods".
package netns

import (
	"errors"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread switched into the named namespace; sockets fn
// creates stay in that namespace. If switching back fails, the thread stays
// locked and the runtime drops it, so no goroutine ever runs in the wrong
// namespace.
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
