//go:build tools

// Package tools pins the upstream commands built by scripts/kube-binaries.sh:
//
//	go build k8s.io/kubernetes/cmd/kube-apiserver   (from this module)
//	go build ./etcd                                 (etcdmain.Main)
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
