// Package kube is the infrastructure evidence: Kubernetes objects watched
// with shared informers resolve the IP addresses in the TCP tables that the
// node agents serve, and the resolved connections become network edges
// (see docs/kubernetes.md).
package kube

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source"
	"github.com/livemap/servicemap/pkg/store"
)

// DefaultAgentLabelSelector finds the agent pods when none is configured.
const DefaultAgentLabelSelector = "app.kubernetes.io/name=servicemap-agent"

// MaxSnapshotBytes bounds one agent response (after gzip decoding).
const MaxSnapshotBytes = 64 << 20

// Source watches the cluster and polls the agents.
type Source struct {
	settings *config.Settings
	store    *store.Store
	logger   log.Logger
	client   kubernetes.Interface
	http     *http.Client
	now      func() time.Time
	selector labels.Selector
	maxBytes int64 // response size limit per agent

	factories []informers.SharedInformerFactory // per namespace (or one cluster-wide)
	cluster   informers.SharedInformerFactory   // nodes and namespaces
	agents    informers.SharedInformerFactory   // agent pods (nil without agentNamespace)
	istio     *istioWatch                       // DestinationRules/VirtualServices once served
	synced    []cache.InformerSynced
	names     []string // what each synced entry watches, for error messages

	mu        sync.Mutex          // one refresh at a time
	agentRuns map[string]agentRun // by agent address
	// forgotBefore: the latest refresh that listed an agent forgotten
	// since (see fetchAgent).
	forgotBefore time.Time
	birthPages   int // answers per agent per refresh while births say More (0: maxBirthPages)
	lastIdx      *Index
	stop         chan struct{}
	started      bool
}

// RestConfig builds the API client configuration: in-cluster, or the API
// server URL with the bearer token and CA certificate from secureJsonData.
// TLS is always verified.
func RestConfig(s *config.Settings) (*rest.Config, error) {
	if s.Kube.Mode == "url" {
		cfg := &rest.Config{Host: s.Kube.APIServerURL, BearerToken: s.Secrets.KubeToken}
		if s.Secrets.KubeCACert != "" {
			cfg.CAData = []byte(s.Secrets.KubeCACert)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes in-cluster config: %w", err)
	}
	return cfg, nil
}

// New prepares the source from the settings; informers start in Run.
func New(s *config.Settings, st *store.Store, logger log.Logger) (*Source, error) {
	cfg, err := RestConfig(s)
	if err != nil {
		return nil, err
	}
	return NewWithConfig(cfg, s, st, logger)
}

// NewWithConfig prepares the source with an explicit API client config.
func NewWithConfig(cfg *rest.Config, s *config.Settings, st *store.Store, logger log.Logger) (*Source, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Insecure = false
	cfg.UserAgent = "servicemap-plugin"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	sel := s.Kube.AgentLabelSelector
	if sel == "" {
		sel = DefaultAgentLabelSelector
	}
	selector, err := labels.Parse(sel)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.agentLabelSelector: %w", err)
	}
	agentClient, err := s.AgentHTTPClient()
	if err != nil {
		return nil, err
	}
	src := &Source{
		settings: s, store: st, logger: logger, client: client, now: time.Now, selector: selector,
		http:      agentClient,
		agentRuns: map[string]agentRun{}, stop: make(chan struct{}), maxBytes: MaxSnapshotBytes,
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	src.istio = &istioWatch{disco: client.Discovery(), dyn: dyn, namespaces: watchedNamespaces(s), every: DefaultIstioDiscoveryInterval}
	src.setupInformers(sel)
	return src, nil
}

// watchedNamespaces is the configured list, or NamespaceAll.
func watchedNamespaces(s *config.Settings) []string {
	if len(s.Kube.Namespaces) == 0 {
		return []string{metav1.NamespaceAll}
	}
	return s.Kube.Namespaces
}

func (s *Source) setupInformers(agentSelector string) {
	namespaces := watchedNamespaces(s.settings)
	add := func(name string, inf cache.SharedIndexInformer) {
		s.names = append(s.names, name)
		s.synced = append(s.synced, inf.HasSynced)
	}
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithNamespace(ns))
		s.factories = append(s.factories, f)
		where := " in namespace " + ns
		if ns == metav1.NamespaceAll {
			where = " in all namespaces"
		}
		add("services"+where, f.Core().V1().Services().Informer())
		add("endpointslices"+where, f.Discovery().V1().EndpointSlices().Informer())
		add("pods"+where, f.Core().V1().Pods().Informer())
		add("replicasets"+where, f.Apps().V1().ReplicaSets().Informer())
		add("deployments"+where, f.Apps().V1().Deployments().Informer())
		add("statefulsets"+where, f.Apps().V1().StatefulSets().Informer())
		add("daemonsets"+where, f.Apps().V1().DaemonSets().Informer())
		add("networkpolicies"+where, f.Networking().V1().NetworkPolicies().Informer())
	}
	s.cluster = informers.NewSharedInformerFactory(s.client, 0)
	add("nodes", s.cluster.Core().V1().Nodes().Informer())
	add("namespaces", s.cluster.Core().V1().Namespaces().Informer())
	if s.settings.Kube.AgentNamespace != "" {
		s.agents = informers.NewSharedInformerFactoryWithOptions(s.client, 0,
			informers.WithNamespace(s.settings.Kube.AgentNamespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = agentSelector }))
		add("agent pods in namespace "+s.settings.Kube.AgentNamespace, s.agents.Core().V1().Pods().Informer())
	}
}

// Kind of evidence.
func (s *Source) Kind() model.Source { return model.SourceNetwork }

// SetClock replaces time.Now (tests).
func (s *Source) SetClock(now func() time.Time) { s.now = now }

// Start starts the informers once.
func (s *Source) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	for _, f := range s.factories {
		f.Start(s.stop)
	}
	s.cluster.Start(s.stop)
	if s.agents != nil {
		s.agents.Start(s.stop)
	}
	go s.istio.run(s.stop)
}

// WaitForSync starts the informers and waits until every cache has synced.
func (s *Source) WaitForSync(ctx context.Context) error {
	s.Start()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		var missing []string
		for i, ok := range s.synced {
			if !ok() {
				missing = append(missing, s.names[i])
			}
		}
		return fmt.Errorf("kubernetes informers did not sync (%s; check the RBAC in deploy/plugin-rbac.yaml): %w", strings.Join(missing, ", "), context.Cause(ctx))
	}
	return nil
}

// Synced reports, without waiting, whether every informer has synced.
func (s *Source) Synced() bool {
	for _, ok := range s.synced {
		if !ok() {
			return false
		}
	}
	return true
}

// Run starts the informers, waits for them, then refreshes on the interval.
func (s *Source) Run(ctx context.Context) {
	go func() { <-ctx.Done(); s.Close() }()
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := s.WaitForSync(wctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() == nil {
			s.store.ReportFailure(model.SourceNetwork, s.now(), err)
			s.logger.Warn("Kubernetes informers not synced yet", "error", err)
		}
	}
	source.Every(ctx, s.settings.RefreshInterval(), s.Refresh, s.logger, "Network refresh incomplete; other agents' data still flows")
}

// Index builds a resolver from the informers' current caches.
func (s *Source) Index() *Index {
	var o Objects
	for _, f := range s.factories {
		svcs, _ := f.Core().V1().Services().Lister().List(labels.Everything())
		o.Services = append(o.Services, svcs...)
		es, _ := f.Discovery().V1().EndpointSlices().Lister().List(labels.Everything())
		o.EndpointSlices = append(o.EndpointSlices, es...)
		pods, _ := f.Core().V1().Pods().Lister().List(labels.Everything())
		o.Pods = append(o.Pods, pods...)
		rs, _ := f.Apps().V1().ReplicaSets().Lister().List(labels.Everything())
		o.ReplicaSets = append(o.ReplicaSets, rs...)
		d, _ := f.Apps().V1().Deployments().Lister().List(labels.Everything())
		o.Deployments = append(o.Deployments, d...)
		ss, _ := f.Apps().V1().StatefulSets().Lister().List(labels.Everything())
		o.StatefulSets = append(o.StatefulSets, ss...)
		ds, _ := f.Apps().V1().DaemonSets().Lister().List(labels.Everything())
		o.DaemonSets = append(o.DaemonSets, ds...)
	}
	o.Nodes, _ = s.cluster.Core().V1().Nodes().Lister().List(labels.Everything())
	o.Namespaces, _ = s.cluster.Core().V1().Namespaces().Lister().List(labels.Everything())
	o.DestinationRules, o.VirtualServices = s.istio.objects()
	return BuildIndex(o, s.settings.Kube.ExternalCIDRs)
}

// DeclaredEdges reads the watched NetworkPolicies as allowed edges.
func (s *Source) DeclaredEdges() []PolicyEdge {
	var pols []*networkingv1.NetworkPolicy
	var svcs []*corev1.Service
	for _, f := range s.factories {
		p, _ := f.Networking().V1().NetworkPolicies().Lister().List(labels.Everything())
		pols = append(pols, p...)
		sv, _ := f.Core().V1().Services().Lister().List(labels.Everything())
		svcs = append(svcs, sv...)
	}
	nss, _ := s.cluster.Core().V1().Namespaces().Lister().List(labels.Everything())
	return DeclaredEdges(pols, svcs, nss, s.settings.Kube.ExternalCIDRs)
}

// Check verifies that the API server answers and that every resource the
// informers watch may be listed (the error names the first one refused),
// then that a few agents answer with the settings' token and TLS.
func (s *Source) Check(ctx context.Context) error {
	namespaces := s.settings.Kube.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	one := metav1.ListOptions{Limit: 1}
	type lister struct {
		what string
		list func(ns string) error
	}
	c := s.client
	namespaced := []lister{
		{"services", func(ns string) error { _, err := c.CoreV1().Services(ns).List(ctx, one); return err }},
		{"endpointslices", func(ns string) error { _, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, one); return err }},
		{"pods", func(ns string) error { _, err := c.CoreV1().Pods(ns).List(ctx, one); return err }},
		{"replicasets", func(ns string) error { _, err := c.AppsV1().ReplicaSets(ns).List(ctx, one); return err }},
		{"deployments", func(ns string) error { _, err := c.AppsV1().Deployments(ns).List(ctx, one); return err }},
		{"statefulsets", func(ns string) error { _, err := c.AppsV1().StatefulSets(ns).List(ctx, one); return err }},
		{"daemonsets", func(ns string) error { _, err := c.AppsV1().DaemonSets(ns).List(ctx, one); return err }},
		{"networkpolicies", func(ns string) error { _, err := c.NetworkingV1().NetworkPolicies(ns).List(ctx, one); return err }},
	}
	for _, ns := range namespaces {
		for _, l := range namespaced {
			if err := l.list(ns); err != nil {
				return fmt.Errorf("kubernetes: listing %s in %q: %w", l.what, ns, err)
			}
		}
	}
	if _, err := c.CoreV1().Nodes().List(ctx, one); err != nil {
		return fmt.Errorf("kubernetes: listing nodes: %w", err)
	}
	if _, err := c.CoreV1().Namespaces().List(ctx, one); err != nil {
		return fmt.Errorf("kubernetes: listing namespaces: %w", err)
	}
	if err := s.istio.check(ctx); err != nil {
		return err
	}
	return s.checkAgents(ctx)
}

// Close stops the informers.
func (s *Source) Close() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	for _, f := range s.factories {
		f.Shutdown()
	}
	s.cluster.Shutdown()
	if s.agents != nil {
		s.agents.Shutdown()
	}
	s.istio.shutdown()
}
