// Package source holds what the evidence sources (traces, kube, gateway)
// share; each source lives in its own subpackage.
package source

import (
	"context"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
)

// Every calls refresh at once and then every interval until ctx ends. A
// failed refresh is logged with the message failed; the source keeps its
// last good data in the store, so the next tick simply tries again.
func Every(ctx context.Context, interval time.Duration, refresh func(context.Context) error, logger log.Logger, failed string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := refresh(ctx); err != nil && ctx.Err() == nil {
			logger.Warn(failed, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
