package kube

import (
	"cmp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
)

// PolicyEdge is an edge a NetworkPolicy allows, with the policies
// ("namespace/name", sorted) that declare it.
type PolicyEdge struct {
	model.EdgeKey
	Policies []string
}

// DeclaredEdges reads NetworkPolicies as declared allowed edges, for the
// drift view. A Service stands for the pods its selector selects (its
// selector labels are taken as those pods' labels), so:
//
//   - an ingress rule's `from` peer (podSelector, in the policy's namespace
//     or in the namespaces a namespaceSelector picks) allows peer service →
//     every service the policy's podSelector selects;
//   - an egress rule's `to` peer allows selected service → peer service;
//   - an ipBlock peer is the external nodes its CIDR (minus `except`) covers,
//     named by the externalCidrs rules as the resolver names addresses
//     (cidrRules.blockNames).
//
// Rules without peers (allow-all) declare no edge; Services without a
// selector are never selected. Node ids follow ServiceIDs. Edges are
// deduplicated, self-edges dropped, and sorted.
func DeclaredEdges(policies []*networkingv1.NetworkPolicy, services []*corev1.Service, namespaces []*corev1.Namespace, cidrs []config.ExternalCIDR) []PolicyEdge {
	ids := ServiceIDs(services)
	rules := newCIDRRules(cidrs)
	nsLabels := map[string]labels.Set{}
	for _, n := range namespaces {
		nsLabels[n.Name] = n.Labels
	}
	selected := func(ns string, sel *metav1.LabelSelector, nsSel *metav1.LabelSelector) []string {
		var podSel labels.Selector = labels.Everything()
		if sel != nil {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				return nil
			}
			podSel = s
		}
		var nsMatch func(string) bool
		if nsSel == nil {
			nsMatch = func(n string) bool { return n == ns }
		} else {
			s, err := metav1.LabelSelectorAsSelector(nsSel)
			if err != nil {
				return nil
			}
			nsMatch = func(n string) bool { return s.Matches(nsLabels[n]) }
		}
		var out []string
		for _, svc := range services {
			if len(svc.Spec.Selector) == 0 || !nsMatch(svc.Namespace) {
				continue
			}
			if podSel.Matches(labels.Set(svc.Spec.Selector)) {
				out = append(out, ids[key(svc.Namespace, svc.Name)])
			}
		}
		return out
	}
	peers := func(ns string, peer networkingv1.NetworkPolicyPeer) []string {
		if peer.IPBlock != nil {
			names, _ := rules.blockNames(peer.IPBlock.CIDR, peer.IPBlock.Except)
			return names
		}
		if peer.PodSelector == nil && peer.NamespaceSelector == nil {
			return nil
		}
		return selected(ns, peer.PodSelector, peer.NamespaceSelector)
	}
	set := map[model.EdgeKey][]string{}
	declare := func(from, to, policy string) {
		if from != to && !slices.Contains(set[model.EdgeKey{Source: from, Target: to}], policy) {
			k := model.EdgeKey{Source: from, Target: to}
			set[k] = append(set[k], policy)
		}
	}
	for _, p := range policies {
		targets := selected(p.Namespace, &p.Spec.PodSelector, nil)
		name := key(p.Namespace, p.Name)
		for _, r := range p.Spec.Ingress {
			for _, peer := range r.From {
				for _, from := range peers(p.Namespace, peer) {
					for _, to := range targets {
						declare(from, to, name)
					}
				}
			}
		}
		for _, r := range p.Spec.Egress {
			for _, peer := range r.To {
				for _, to := range peers(p.Namespace, peer) {
					for _, from := range targets {
						declare(from, to, name)
					}
				}
			}
		}
	}
	out := make([]PolicyEdge, 0, len(set))
	for k, pols := range set {
		slices.Sort(pols)
		out = append(out, PolicyEdge{k, pols})
	}
	slices.SortFunc(out, func(a, b PolicyEdge) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Target, b.Target))
	})
	return out
}

// Keys drops the policy names.
func Keys(edges []PolicyEdge) []model.EdgeKey {
	out := make([]model.EdgeKey, len(edges))
	for i, e := range edges {
		out[i] = e.EdgeKey
	}
	return out
}
