package kube

import (
	corev1 "k8s.io/api/core/v1"
)

// baseServiceID is a Service's id before disambiguation: the annotation
// servicemap.livemap.io/service-name, else the label app.kubernetes.io/name,
// else the Service's name.
func baseServiceID(s *corev1.Service) string {
	if v := s.Annotations[AnnotationServiceName]; v != "" {
		return v
	}
	if v := s.Labels[LabelAppName]; v != "" {
		return v
	}
	return s.Name
}

// ServiceIDs names every Service on the map, keyed by namespace/name.
//
// The id is baseServiceID, the name a trace's service.name carries, as long
// as it is unique across the watched namespaces. When Services in two or more
// namespaces share a base id (the same app deployed to "staging" and
// "prod"), each of them without the service-name annotation becomes
// "<base>.<namespace>", so they stay two nodes. The annotation is an
// explicit choice and is never qualified: annotate two Services with one
// name to merge them on purpose. Services of one namespace sharing a base
// id (e.g. "checkout" and "checkout-headless" both labelled
// app.kubernetes.io/name=checkout) stay one node.
func ServiceIDs(services []*corev1.Service) map[string]string {
	nsOf := map[string]map[string]bool{} // base id -> namespaces using it
	for _, s := range services {
		b := baseServiceID(s)
		if nsOf[b] == nil {
			nsOf[b] = map[string]bool{}
		}
		nsOf[b][s.Namespace] = true
	}
	ids := make(map[string]string, len(services))
	for _, s := range services {
		b := baseServiceID(s)
		if len(nsOf[b]) > 1 && s.Annotations[AnnotationServiceName] == "" {
			b += "." + s.Namespace
		}
		ids[key(s.Namespace, s.Name)] = b
	}
	return ids
}
