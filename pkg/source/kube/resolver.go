package kube

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
)

// Labels and annotations read from Kubernetes objects (docs/kubernetes.md).
const (
	AnnotationServiceName    = "servicemap.livemap.io/service-name"
	LabelAppName             = "app.kubernetes.io/name"
	AnnotationTeam           = "servicemap.livemap.io/team"
	AnnotationBackstageOwner = "backstage.io/owner"
	LabelTeam                = "team"
	AnnotationTier           = "servicemap.livemap.io/tier"
	LabelTier                = "tier"
	AnnotationCircuitBreaker = "servicemap.livemap.io/circuit-breaker"
	AnnotationRetryPolicy    = "servicemap.livemap.io/retry-policy"
	AnnotationRestartedAt    = "kubectl.kubernetes.io/restartedAt"
	// HostNodePrefix prefixes the id of a Kubernetes node on the map.
	HostNodePrefix = "node:"
)

// Objects is what the informers hold, as plain lists. BuildIndex turns them
// into an Index; tests build them by hand.
type Objects struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
	Nodes          []*corev1.Node
	Namespaces     []*corev1.Namespace
	ReplicaSets    []*appsv1.ReplicaSet
	Deployments    []*appsv1.Deployment
	StatefulSets   []*appsv1.StatefulSet
	DaemonSets     []*appsv1.DaemonSet
	// Istio objects (dynamic client), when the CRDs are served.
	DestinationRules []*unstructured.Unstructured
	VirtualServices  []*unstructured.Unstructured
}

// Target is what an address resolved to.
type Target struct {
	ID        string         // node id on the map
	Kind      model.NodeKind // service, host or external
	Namespace string
	Service   *corev1.Service     // the Service when known
	Port      *corev1.ServicePort // the Service port the address:port hit, when known
	// ServerPort is the port the server process listens on: the targetPort
	// for a ClusterIP:port, the port itself otherwise.
	ServerPort uint16
	Pod        *corev1.Pod // the pod for a pod IP
}

// Index resolves IP addresses against one view of the cluster. It is
// immutable once built, so a refresh can use it without locks.
type Index struct {
	clusterIP  map[netip.Addr]*corev1.Service
	podByIP    map[netip.Addr]*corev1.Pod
	podByUID   map[string]*corev1.Pod
	nodeByIP   map[netip.Addr]string
	podSvcs    map[string][]*corev1.Service // pod ns/name -> services listing it
	ipSvcs     map[netip.Addr][]*corev1.Service
	svcSlices  map[string][]*discoveryv1.EndpointSlice // svc ns/name -> slices
	svcPods    map[string][]*corev1.Pod
	rsByKey    map[string]*appsv1.ReplicaSet
	deployRSes map[string][]*appsv1.ReplicaSet // deployment ns/name -> its RSes
	deploys    map[string]*appsv1.Deployment
	sts        map[string]*appsv1.StatefulSet
	ds         map[string]*appsv1.DaemonSet
	nsLabels   map[string]map[string]string
	services   []*corev1.Service
	svcID      map[string]string // ns/name -> node id (ServiceIDs)
	baseNode   map[string]string // ns/base id -> node id (TraceServiceNode)
	cidrs      cidrRules
	policies   trafficPolicies // Istio circuit breakers and retries by Service ns/name
}

// BuildIndex indexes the objects. CIDR rules that do not parse are skipped
// (config.Parse has validated them).
func BuildIndex(o Objects, cidrs []config.ExternalCIDR) *Index {
	x := &Index{
		clusterIP: map[netip.Addr]*corev1.Service{}, podByIP: map[netip.Addr]*corev1.Pod{},
		podByUID: map[string]*corev1.Pod{}, nodeByIP: map[netip.Addr]string{},
		podSvcs: map[string][]*corev1.Service{}, ipSvcs: map[netip.Addr][]*corev1.Service{},
		svcSlices: map[string][]*discoveryv1.EndpointSlice{}, svcPods: map[string][]*corev1.Pod{},
		rsByKey: map[string]*appsv1.ReplicaSet{}, deployRSes: map[string][]*appsv1.ReplicaSet{},
		deploys: map[string]*appsv1.Deployment{}, sts: map[string]*appsv1.StatefulSet{},
		ds: map[string]*appsv1.DaemonSet{}, nsLabels: map[string]map[string]string{},
	}
	x.cidrs = newCIDRRules(cidrs)
	for _, n := range o.Namespaces {
		x.nsLabels[n.Name] = n.Labels
	}
	for _, n := range o.Nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				x.nodeByIP[ip.Unmap()] = n.Name
			}
		}
	}
	svcByKey := map[string]*corev1.Service{}
	x.services = slices.Clone(o.Services)
	slices.SortFunc(x.services, func(a, b *corev1.Service) int {
		return strings.Compare(key(a.Namespace, a.Name), key(b.Namespace, b.Name))
	})
	x.svcID = ServiceIDs(x.services)
	x.baseNode = make(map[string]string, len(x.services))
	for _, s := range x.services {
		b, id := baseServiceID(s), x.svcID[key(s.Namespace, s.Name)]
		// An annotated Service keeps the bare id its traces carry; it wins
		// over a qualified sibling of the same base id in its namespace.
		if cur, ok := x.baseNode[key(s.Namespace, b)]; !ok || (cur != b && id == b) {
			x.baseNode[key(s.Namespace, b)] = id
		}
	}
	for _, s := range x.services {
		svcByKey[key(s.Namespace, s.Name)] = s
		for _, ipStr := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
			if ip, err := netip.ParseAddr(ipStr); err == nil {
				x.clusterIP[ip.Unmap()] = s
			}
		}
	}
	// Pods: a terminated pod gives its IP up; among live pods sharing an IP
	// (a reused address while the old pod is still terminating) the newest wins.
	for _, p := range o.Pods {
		x.podByUID[string(p.UID)] = p
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ips := []string{p.Status.PodIP}
		for _, pi := range p.Status.PodIPs {
			ips = append(ips, pi.IP)
		}
		for _, s := range ips {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			if cur := x.podByIP[ip]; cur != nil && newerPod(cur, p) {
				continue
			}
			x.podByIP[ip] = p
		}
	}
	podByKey := map[string]*corev1.Pod{}
	for _, p := range o.Pods {
		podByKey[key(p.Namespace, p.Name)] = p
	}
	for _, es := range o.EndpointSlices {
		svc := svcByKey[key(es.Namespace, es.Labels[discoveryv1.LabelServiceName])]
		if svc == nil {
			continue
		}
		sk := key(svc.Namespace, svc.Name)
		x.svcSlices[sk] = append(x.svcSlices[sk], es)
		for _, ep := range es.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				ns := ep.TargetRef.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				pk := key(ns, ep.TargetRef.Name)
				if !slices.Contains(x.podSvcs[pk], svc) {
					x.podSvcs[pk] = append(x.podSvcs[pk], svc)
				}
				if p := podByKey[pk]; p != nil && (ep.TargetRef.UID == "" || ep.TargetRef.UID == p.UID) && !slices.Contains(x.svcPods[sk], p) {
					x.svcPods[sk] = append(x.svcPods[sk], p)
				}
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil && !slices.Contains(x.ipSvcs[ip.Unmap()], svc) {
					x.ipSvcs[ip.Unmap()] = append(x.ipSvcs[ip.Unmap()], svc)
				}
			}
		}
	}
	for _, rs := range o.ReplicaSets {
		x.rsByKey[key(rs.Namespace, rs.Name)] = rs
		if ref := controllerOf(rs.OwnerReferences); ref != nil && ref.Kind == "Deployment" {
			dk := key(rs.Namespace, ref.Name)
			x.deployRSes[dk] = append(x.deployRSes[dk], rs)
		}
	}
	for _, d := range o.Deployments {
		x.deploys[key(d.Namespace, d.Name)] = d
	}
	for _, s := range o.StatefulSets {
		x.sts[key(s.Namespace, s.Name)] = s
	}
	for _, d := range o.DaemonSets {
		x.ds[key(d.Namespace, d.Name)] = d
	}
	x.policies = buildTrafficPolicies(o.DestinationRules, o.VirtualServices, func(k string) bool { return svcByKey[k] != nil })
	return x
}

func key(ns, name string) string { return ns + "/" + name }

// newerPod reports whether a should keep an IP over b: a running pod beats a
// pending one, then the later creation wins.
func newerPod(a, b *corev1.Pod) bool {
	ar, br := a.Status.Phase == corev1.PodRunning && a.DeletionTimestamp == nil, b.Status.Phase == corev1.PodRunning && b.DeletionTimestamp == nil
	if ar != br {
		return ar
	}
	return b.CreationTimestamp.Before(&a.CreationTimestamp)
}

func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

// ServiceNodeID is the map id of a Service (ServiceIDs: the name traces
// use, qualified by namespace only when ambiguous).
func (x *Index) ServiceNodeID(s *corev1.Service) string {
	if id, ok := x.svcID[key(s.Namespace, s.Name)]; ok {
		return id
	}
	return baseServiceID(s)
}

// TraceServiceNode is the node of the service a span names: name is the
// span's service.name, namespace its Kubernetes namespace. It answers the id
// of the namespace's Service whose base id (annotation, app.kubernetes.io/name
// label, name) is name — "<name>.<namespace>" exactly when ServiceIDs
// qualifies it — and false when the namespace has no such Service.
func (x *Index) TraceServiceNode(namespace, name string) (string, bool) {
	id, ok := x.baseNode[key(namespace, name)]
	return id, ok
}

// PodNodeID is the map id of a pod: its own servicemap.livemap.io/service-name
// annotation, else the id of the first (by namespace/name) Service whose
// EndpointSlices list it, else its app.kubernetes.io/name label, else its
// owner workload's name (ReplicaSet resolved to its Deployment), else the
// pod name.
func (x *Index) PodNodeID(p *corev1.Pod) string {
	if v := p.Annotations[AnnotationServiceName]; v != "" {
		return v
	}
	if svcs := x.ServicesOfPod(p); len(svcs) > 0 {
		return x.ServiceNodeID(svcs[0])
	}
	if v := p.Labels[LabelAppName]; v != "" {
		return v
	}
	if kind, name := x.Workload(p); name != "" && kind != "" {
		return name
	}
	return p.Name
}

// ServicesOfPod lists the Services whose EndpointSlices name the pod by
// targetRef, sorted by namespace/name.
func (x *Index) ServicesOfPod(p *corev1.Pod) []*corev1.Service {
	out := slices.Clone(x.podSvcs[key(p.Namespace, p.Name)])
	slices.SortFunc(out, func(a, b *corev1.Service) int {
		return strings.Compare(key(a.Namespace, a.Name), key(b.Namespace, b.Name))
	})
	return out
}

// Workload is the pod's owning workload: a ReplicaSet is followed to its
// Deployment. kind is "" when the pod has no owner.
func (x *Index) Workload(p *corev1.Pod) (kind, name string) {
	ref := controllerOf(p.OwnerReferences)
	if ref == nil {
		return "", ""
	}
	if ref.Kind == "ReplicaSet" {
		if rs := x.rsByKey[key(p.Namespace, ref.Name)]; rs != nil {
			if d := controllerOf(rs.OwnerReferences); d != nil && d.Kind == "Deployment" {
				return "Deployment", d.Name
			}
		}
	}
	return ref.Kind, ref.Name
}

// lastDeploy of a pod's workload: a Deployment's newest ReplicaSet creation,
// or the pod template's kubectl.kubernetes.io/restartedAt, whichever is later.
func (x *Index) lastDeploy(p *corev1.Pod) time.Time {
	kind, name := x.Workload(p)
	var t time.Time
	later := func(u time.Time) {
		if u.After(t) {
			t = u
		}
	}
	restarted := func(ann map[string]string) {
		if v := ann[AnnotationRestartedAt]; v != "" {
			if u, err := time.Parse(time.RFC3339, v); err == nil {
				later(u)
			}
		}
	}
	k := key(p.Namespace, name)
	switch kind {
	case "Deployment":
		for _, rs := range x.deployRSes[k] {
			later(rs.CreationTimestamp.Time)
		}
		if d := x.deploys[k]; d != nil {
			restarted(d.Spec.Template.Annotations)
		}
	case "StatefulSet":
		if s := x.sts[k]; s != nil {
			restarted(s.Spec.Template.Annotations)
		}
	case "DaemonSet":
		if d := x.ds[k]; d != nil {
			restarted(d.Spec.Template.Annotations)
		}
	case "ReplicaSet":
		if rs := x.rsByKey[k]; rs != nil {
			later(rs.CreationTimestamp.Time)
		}
	}
	return t
}

// Resolve names the remote end of a connection. ok is false for addresses
// that are not evidence (loopback, unspecified, unparsable).
func (x *Index) Resolve(ip netip.Addr, port uint16) (Target, bool) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsUnspecified() {
		return Target{}, false
	}
	if s := x.clusterIP[ip]; s != nil {
		t := Target{ID: x.ServiceNodeID(s), Kind: model.KindService, Namespace: s.Namespace, Service: s, ServerPort: port}
		if sp := servicePort(s, port); sp != nil {
			t.Port = sp
			t.ServerPort = x.targetPort(s, sp)
		}
		return t, true
	}
	if p := x.podByIP[ip]; p != nil {
		t := Target{ID: x.PodNodeID(p), Kind: model.KindService, Namespace: p.Namespace, Pod: p, ServerPort: port}
		for _, s := range x.ServicesOfPod(p) {
			if sp := x.portByTarget(s, p, port); sp != nil {
				t.Service, t.Port = s, sp
				break
			}
		}
		if t.Service == nil {
			if svcs := x.ServicesOfPod(p); len(svcs) > 0 {
				t.Service = svcs[0]
			}
		}
		return t, true
	}
	if n, ok := x.nodeByIP[ip]; ok {
		return Target{ID: HostNodePrefix + n, Kind: model.KindHost, ServerPort: port}, true
	}
	// An endpoint address without a pod object (e.g. a selectorless
	// Service's manual EndpointSlice) resolves to its Service.
	if svcs := x.ipSvcs[ip]; len(svcs) > 0 {
		return Target{ID: x.ServiceNodeID(svcs[0]), Kind: model.KindService, Namespace: svcs[0].Namespace, Service: svcs[0], ServerPort: port}, true
	}
	if name, ok := x.cidrs.name(ip); ok {
		return Target{ID: name, Kind: model.KindExternal, ServerPort: port}, true
	}
	return Target{ID: ip.String(), Kind: model.KindExternal, ServerPort: port}, true
}

// IsNode reports whether ip is a Kubernetes node's address.
func (x *Index) IsNode(ip netip.Addr) bool {
	_, ok := x.nodeByIP[ip.Unmap()]
	return ok
}

// PodByUID finds a pod by UID (the agent reads it from the cgroup).
func (x *Index) PodByUID(uid string) *corev1.Pod { return x.podByUID[uid] }

// PodByIP finds the live pod holding ip.
func (x *Index) PodByIP(ip netip.Addr) *corev1.Pod { return x.podByIP[ip.Unmap()] }

func servicePort(s *corev1.Service, port uint16) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Port == int32(port) && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return p
		}
	}
	return nil
}

// targetPort maps a Service port to the port the pods listen on: a numeric
// targetPort directly; a named one through the EndpointSlice port of the same
// name (what kube-proxy programs); else the Service port itself.
func (x *Index) targetPort(s *corev1.Service, sp *corev1.ServicePort) uint16 {
	if sp.TargetPort.IntValue() > 0 {
		return uint16(sp.TargetPort.IntValue())
	}
	for _, es := range x.svcSlices[key(s.Namespace, s.Name)] {
		for _, p := range es.Ports {
			if p.Port != nil && (p.Name == nil && sp.Name == "" || p.Name != nil && *p.Name == sp.Name) {
				return uint16(*p.Port)
			}
		}
	}
	if sp.TargetPort.StrVal == "" {
		return uint16(sp.Port)
	}
	return 0
}

// portByTarget finds the Service port whose target port is port.
func (x *Index) portByTarget(s *corev1.Service, _ *corev1.Pod, port uint16) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		if x.targetPort(s, &s.Spec.Ports[i]) == port {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

// Protocol of a Service port: its appProtocol, else the prefix of its name
// before "-" (Istio's convention: "grpc-api", "http"), else "TCP".
func Protocol(sp *corev1.ServicePort) string {
	if sp == nil {
		return "TCP"
	}
	if sp.AppProtocol != nil && *sp.AppProtocol != "" {
		if p := protocolName(*sp.AppProtocol); p != "" {
			return p
		}
	}
	name, _, _ := strings.Cut(sp.Name, "-")
	if p := protocolName(name); p != "" {
		return p
	}
	return "TCP"
}

func protocolName(s string) string {
	s = strings.ToLower(s)
	s = strings.TrimPrefix(s, "kubernetes.io/")
	switch s {
	case "grpc", "grpc-web":
		return "gRPC"
	case "http", "http2", "h2c", "ws":
		return "HTTP"
	case "https", "wss":
		return "HTTPS"
	case "tls":
		return "TLS"
	case "postgres", "postgresql":
		return "postgresql"
	case "mysql", "redis", "kafka", "mongo", "mongodb", "amqp", "nats":
		return s
	}
	return ""
}

// ServiceNode describes a Service as a map node: kind, namespace, team, tier
// and the last deploy of the workloads behind it.
func (x *Index) ServiceNode(s *corev1.Service) model.NodeInfo {
	n := model.NodeInfo{ID: x.ServiceNodeID(s), Kind: model.KindService, Namespace: s.Namespace}
	n.Team = pick(s.Annotations[AnnotationTeam], s.Labels[AnnotationTeam], s.Annotations[AnnotationBackstageOwner], s.Labels[LabelTeam])
	n.Tier = pick(s.Annotations[AnnotationTier], s.Labels[AnnotationTier], s.Labels[LabelTier])
	for _, p := range x.svcPods[key(s.Namespace, s.Name)] {
		if n.Team == "" {
			n.Team = pick(p.Annotations[AnnotationTeam], p.Labels[AnnotationTeam], p.Annotations[AnnotationBackstageOwner], p.Labels[LabelTeam])
		}
		if n.Tier == "" {
			n.Tier = pick(p.Annotations[AnnotationTier], p.Labels[AnnotationTier], p.Labels[LabelTier])
		}
		if t := x.lastDeploy(p); t.After(n.LastDeploy) {
			n.LastDeploy = t
		}
	}
	if n.Team == "" {
		n.Team = pick(x.nsLabels[s.Namespace][AnnotationTeam], x.nsLabels[s.Namespace][LabelTeam])
	}
	return n
}

// Services returns every indexed Service, sorted by namespace/name.
func (x *Index) Services() []*corev1.Service { return x.services }

// EdgeInfoFor is what the callee Service says about calls to it. The circuit
// breaker and retry policy come from the Istio DestinationRule and
// VirtualService naming the Service, else from its annotations.
func (x *Index) EdgeInfoFor(t Target) model.EdgeInfo {
	info := model.EdgeInfo{Protocol: Protocol(t.Port)}
	if t.Service != nil {
		k := key(t.Service.Namespace, t.Service.Name)
		info.CircuitBreaker = pick(x.policies.breaker[k], t.Service.Annotations[AnnotationCircuitBreaker])
		info.RetryPolicy = pick(x.policies.retry[k], t.Service.Annotations[AnnotationRetryPolicy])
		info.OwnerTeam = pick(t.Service.Annotations[AnnotationTeam], t.Service.Labels[AnnotationTeam], t.Service.Annotations[AnnotationBackstageOwner], t.Service.Labels[LabelTeam])
		info.Tier = pick(t.Service.Annotations[AnnotationTier], t.Service.Labels[AnnotationTier], t.Service.Labels[LabelTier])
	}
	return info
}

func pick(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
