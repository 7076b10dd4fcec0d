package kube

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/livemap/servicemap/pkg/model"
)

// DeclaredEdges reads NetworkPolicies as declared allowed edges between
// services, for the drift view. A Service stands for the pods its selector
// selects (its selector labels are taken as those pods' labels), so:
//
//   - an ingress rule's `from` peer (podSelector, in the policy's namespace
//     or in the namespaces a namespaceSelector picks) allows peer service →
//     every service the policy's podSelector selects;
//   - an egress rule's `to` peer allows selected service → peer service.
//
// Rules without peers (allow-all) and ipBlock peers declare no edge between
// services; Services without a selector are never selected. Edges are
// deduplicated, self-edges dropped, and sorted.
func DeclaredEdges(policies []*networkingv1.NetworkPolicy, services []*corev1.Service, namespaces []*corev1.Namespace) []model.EdgeKey {
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
				out = append(out, ServiceNodeID(svc))
			}
		}
		return out
	}
	set := map[model.EdgeKey]bool{}
	for _, p := range policies {
		targets := selected(p.Namespace, &p.Spec.PodSelector, nil)
		if len(targets) == 0 {
			continue
		}
		for _, r := range p.Spec.Ingress {
			for _, peer := range r.From {
				if peer.PodSelector == nil && peer.NamespaceSelector == nil {
					continue // ipBlock
				}
				for _, from := range selected(p.Namespace, peer.PodSelector, peer.NamespaceSelector) {
					for _, to := range targets {
						set[model.EdgeKey{Source: from, Target: to}] = true
					}
				}
			}
		}
		for _, r := range p.Spec.Egress {
			for _, peer := range r.To {
				if peer.PodSelector == nil && peer.NamespaceSelector == nil {
					continue
				}
				for _, to := range selected(p.Namespace, peer.PodSelector, peer.NamespaceSelector) {
					for _, from := range targets {
						set[model.EdgeKey{Source: from, Target: to}] = true
					}
				}
			}
		}
	}
	out := make([]model.EdgeKey, 0, len(set))
	for k := range set {
		if k.Source != k.Target {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b model.EdgeKey) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return out
}
