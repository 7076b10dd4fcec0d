// Package plugin is the Grafana glue: the instance lifecycle, one file per
// query type on a QueryTypeMux, health checks and resources. Queries are
// answered from the store only; sources run in the background.
package plugin

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/gateway"
	"github.com/livemap/servicemap/pkg/source/kube"
	"github.com/livemap/servicemap/pkg/source/traces"
	"github.com/livemap/servicemap/pkg/store"
)

// PluginID is the id in plugin.json.
const PluginID = "livemap-servicemap-datasource"

// kubeSyncWait bounds how long a trace refresh waits for the Kubernetes
// informers before naming spans without them.
const kubeSyncWait = 10 * time.Second

// Source feeds the store in the background until its context ends.
type Source interface {
	Kind() model.Source
	// Run refreshes on its own schedule and reports each refresh to the store.
	Run(ctx context.Context)
	// Check verifies connectivity and schema for CheckHealth.
	Check(ctx context.Context) error
	Close()
}

// Datasource is one configured instance. Grafana rebuilds it when its
// settings change and may dispose of it when idle; Dispose stops every
// background goroutine.
type Datasource struct {
	settings   *config.Settings
	settingErr error // malformed settings: every call answers with it
	store      *store.Store
	sources    []Source
	links      frames.Links
	logger     log.Logger
	mux        *datasource.QueryTypeMux
	resources  backend.CallResourceHandler
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	now        func() time.Time
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// Options let tests inject a clock.
type Options struct {
	Now func() time.Time
}

// NewDatasource is the instance factory given to datasource.Manage.
func NewDatasource(ctx context.Context, settings backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	return NewDatasourceWithOptions(ctx, settings, Options{})
}

// NewDatasourceWithOptions builds an instance and starts its sources. Bad
// settings do not fail the factory: the instance answers every query and
// health check with the specific error, so Grafana shows it where the user
// looks.
func NewDatasourceWithOptions(_ context.Context, settings backend.DataSourceInstanceSettings, opts Options) (*Datasource, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Datasource{logger: log.DefaultLogger.With("datasource", settings.Name, "uid", settings.UID), now: opts.Now}
	d.buildMux()
	s, err := config.Parse(settings.JSONData, settings.DecryptedSecureJSONData)
	if err != nil {
		d.settingErr = err
		d.logger.Warn("Invalid settings", "error", err)
		return d, nil
	}
	d.settings = s
	d.store = store.New(store.Options{Retention: s.Retention(), Now: opts.Now})
	d.links = frames.Links{
		SelfUID: settings.UID, SelfName: settings.Name,
		TraceType: s.TraceLink.Type, TraceDatasourceUID: s.TraceLink.DatasourceUID, TraceURLTemplate: s.TraceLink.URLTemplate,
	}
	var kubeSrc *kube.Source // built below when Kubernetes is on
	if s.HasTraceSource() {
		var trOpts traces.Options
		if s.Kube.Enabled {
			// spans land on the nodes the network evidence uses: a service
			// name shared by two watched namespaces is qualified by the span's
			// k8s.namespace.name (docs/kubernetes.md "Node ids")
			var waited atomic.Bool
			trOpts.Namer = func(ctx context.Context) traces.Namer {
				// A window is read once: the first refresh (the backfill)
				// waits briefly for the informers, so it is not named from an
				// empty cluster; later ones do not wait. A cluster that stays
				// unreadable leaves names as service.name.
				if !waited.Swap(true) {
					ctx, cancel := context.WithTimeout(ctx, kubeSyncWait)
					defer cancel()
					_ = kubeSrc.WaitForSync(ctx) // the kube source reports its own failure
				}
				if !kubeSrc.Synced() {
					return nil
				}
				return kubeSrc.Index()
			}
		}
		src, err := traces.New(s, d.store, d.logger.With("source", "traces"), trOpts)
		if err != nil {
			d.settingErr = fmt.Errorf("trace source: %w", err)
			return d, nil
		}
		src.SetClock(opts.Now)
		d.sources = append(d.sources, src)
	}
	if s.Kube.Enabled {
		src, err := kube.New(s, d.store, d.logger.With("source", "kubernetes"))
		if err != nil {
			d.closeSources()
			d.settingErr = fmt.Errorf("kubernetes source: %w", err)
			return d, nil
		}
		src.SetClock(opts.Now)
		d.sources = append(d.sources, src)
		kubeSrc = src
	}
	if s.Gateway.Enabled {
		var gwOpts gateway.Options
		if kubeSrc != nil {
			// without gateway.agents: the agents Kubernetes discovers
			gwOpts.Agents = func() []string {
				addrs := kubeSrc.Agents()
				for i, a := range addrs {
					if !strings.Contains(a, "://") { // static agents may name their scheme
						addrs[i] = s.AgentScheme() + "://" + a
					}
				}
				return addrs
			}
			// upstreams land on the nodes the network evidence uses
			gwOpts.Resolver = func() gateway.Resolver { return newKubeNames(kubeSrc.Index()) }
		}
		src, err := gateway.New(s, d.store, d.logger.With("source", "gateway"), gwOpts)
		if err != nil {
			d.closeSources()
			d.settingErr = fmt.Errorf("gateway source: %w", err)
			return d, nil
		}
		src.SetClock(opts.Now)
		d.sources = append(d.sources, src)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for _, src := range d.sources {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			src.Run(ctx)
		}()
	}
	d.wg.Add(1)
	go func() { // expire and pack buckets once a minute
		defer d.wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.store.Maintain()
			}
		}
	}()
	return d, nil
}

// Store exposes the cache (for the demo command and tests).
func (d *Datasource) Store() *store.Store { return d.store }

// Dispose stops the sources and waits for them.
func (d *Datasource) Dispose() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	d.closeSources()
}

func (d *Datasource) closeSources() {
	for _, s := range d.sources {
		s.Close()
	}
	d.sources = nil
}

// staleNotices names every source whose last refresh failed.
func (d *Datasource) staleNotices() []string {
	var out []string
	for _, st := range d.store.Statuses() {
		if st.Stale() {
			out = append(out, st.Notice())
		}
	}
	return out
}

// kubeNames names gateway upstreams the way the Kubernetes source names
// nodes (docs/kubernetes.md "Node ids").
type kubeNames struct {
	x      *kube.Index
	byName map[string]string // namespace/name → node id
}

func newKubeNames(x *kube.Index) kubeNames {
	k := kubeNames{x: x, byName: map[string]string{}}
	for _, svc := range x.Services() {
		k.byName[svc.Namespace+"/"+svc.Name] = x.ServiceNodeID(svc)
	}
	return k
}

func (k kubeNames) ServiceNode(namespace, name string) (string, bool) {
	id, ok := k.byName[namespace+"/"+name]
	return id, ok
}

func (k kubeNames) AddrNode(ip netip.Addr, port uint16) (string, bool) {
	t, ok := k.x.Resolve(ip, port)
	if !ok || t.Kind != model.KindService {
		return "", false
	}
	return t.ID, true
}
