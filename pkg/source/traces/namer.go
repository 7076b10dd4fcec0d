package traces

// Namer names a span's service the way another source names the same
// service: with Kubernetes on, the Kubernetes source (kube.Index; see
// docs/kubernetes.md "Node ids"), which qualifies a Service as
// "<name>.<namespace>" when its name is used in two watched namespaces.
type Namer interface {
	// TraceServiceNode is the node id of the service called name (a span's
	// service.name) in Kubernetes namespace namespace; false keeps name.
	TraceServiceNode(namespace, name string) (string, bool)
}

// nodeNames remembers a Namer's answer per (namespace, service.name), so a
// span costs one small map lookup on interned strings, and asks the Namer
// only for the first span of each pair after the Namer was set.
type nodeNames struct {
	namer Namer
	ids   map[nsName]string
}

type nsName struct{ namespace, name string }

// set replaces the Namer (a new Kubernetes index) and forgets its answers.
func (n *nodeNames) set(namer Namer) {
	n.namer = namer
	clear(n.ids)
}

// node is the node id of service name in namespace.
func (n *nodeNames) node(namespace, name string) string {
	k := nsName{namespace, name}
	if id, ok := n.ids[k]; ok {
		return id
	}
	id, ok := n.namer.TraceServiceNode(namespace, name)
	if !ok {
		id = name
	}
	if n.ids == nil {
		n.ids = map[nsName]string{}
	}
	n.ids[k] = id
	return id
}

// SetNamer names the services of the spans added from now on through namer
// (nil: by service.name alone). Spans already held keep their names.
func (p *Pairer) SetNamer(namer Namer) { p.nodes.set(namer) }
