package model

import "time"

// NodeKind says what a node on the map is.
type NodeKind string

const (
	KindService   NodeKind = "service"   // an instrumented or Kubernetes service
	KindDatabase  NodeKind = "database"  // virtual: from db.system on a client span
	KindMessaging NodeKind = "messaging" // virtual: from messaging.system
	KindExternal  NodeKind = "external"  // virtual: peer.service / server.address, or an IP outside the cluster
	KindUser      NodeKind = "user"      // virtual caller of root spans and gateway entry traffic
	KindHost      NodeKind = "host"      // a Kubernetes node
)

// UserNodeID is the virtual caller of root SERVER spans and of calls whose
// caller is not recorded.
const UserNodeID = "user"

// NodeInfo is what the sources know about a node besides its traffic. Every
// field is optional; sources fill what they learn and Merge keeps the rest.
type NodeInfo struct {
	ID         string
	Title      string // display name; ID when empty
	Kind       NodeKind
	Namespace  string
	Team       string // owner team
	Tier       string
	LastDeploy time.Time
	// Attributes are extra facts shown as detail__<key> on the node.
	Attributes map[string]string
}

// DisplayTitle is the title or, when none is known, the ID.
func (n *NodeInfo) DisplayTitle() string {
	if n.Title != "" {
		return n.Title
	}
	return n.ID
}

// Merge fills the empty fields of n from o. A later deploy wins.
func (n *NodeInfo) Merge(o NodeInfo) {
	if n.ID == "" {
		n.ID = o.ID
	}
	if n.Title == "" {
		n.Title = o.Title
	}
	// A concrete kind beats the default "service" guessed from traffic.
	if n.Kind == "" || (n.Kind == KindService && o.Kind != "" && o.Kind != KindService) {
		n.Kind = o.Kind
	}
	if o.Namespace != "" {
		n.Namespace = o.Namespace
	}
	if o.Team != "" {
		n.Team = o.Team
	}
	if o.Tier != "" {
		n.Tier = o.Tier
	}
	if o.LastDeploy.After(n.LastDeploy) {
		n.LastDeploy = o.LastDeploy
	}
	for k, v := range o.Attributes {
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		n.Attributes[k] = v
	}
}
