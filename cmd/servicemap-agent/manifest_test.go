package main

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
)

// TestAgentManifests: deploy/agent's objects decode strictly (no unknown
// field), a real kube-apiserver accepts them (server-side dry run), the
// DaemonSet mounts the TLS Secret where -tls-cert/-tls-key point and probes
// over HTTPS, and the agent accepts its arguments (it gets as far as
// reading the certificate, which only exists in the pod).
func TestAgentManifests(t *testing.T) {
	read := func(name string) [][]byte {
		b, err := os.ReadFile("../../deploy/agent/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Split(b, []byte("\n---\n"))
	}
	var ns corev1.Namespace
	var sa corev1.ServiceAccount
	var ds appsv1.DaemonSet
	var svc corev1.Service
	docs := read("daemonset.yaml")
	if len(docs) != 2 {
		t.Fatalf("daemonset.yaml has %d documents, want ServiceAccount and DaemonSet", len(docs))
	}
	for _, d := range []struct {
		doc []byte
		obj any
	}{{read("namespace.yaml")[0], &ns}, {docs[0], &sa}, {docs[1], &ds}, {read("service.yaml")[0], &svc}} {
		if err := yaml.UnmarshalStrict(d.doc, d.obj); err != nil {
			t.Fatalf("strict decode: %v", err)
		}
	}

	c := ds.Spec.Template.Spec.Containers[0]
	args := c.Args
	mount := ""
	for _, m := range c.VolumeMounts {
		if m.Name == "tls" && m.ReadOnly {
			mount = m.MountPath
		}
	}
	var secret string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "tls" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if mount == "" || secret != "servicemap-agent-tls" ||
		!slices.Contains(args, "-tls-cert="+mount+"/tls.crt") || !slices.Contains(args, "-tls-key="+mount+"/tls.key") {
		t.Errorf("TLS wiring: mount %q secret %q args %v", mount, secret, args)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v is not HTTPS", p)
		}
	}
	t.Setenv("SERVICEMAP_AGENT_TOKEN", "x")
	var logs bytes.Buffer
	err := run(context.Background(), append(slices.Clone(args), "-listen=127.0.0.1:0"), &logs, nil)
	if err == nil || !strings.Contains(err.Error(), mount+"/tls.crt") {
		t.Errorf("agent with the manifest's args: %v, want it to reach the certificate file", err)
	}

	kc := kubeapi.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(kc.AdminConfig())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
	if _, err := cs.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &sa, dry); err != nil {
		t.Errorf("ServiceAccount: %v", err)
	}
	if _, err := cs.AppsV1().DaemonSets(ns.Name).Create(ctx, &ds, dry); err != nil {
		t.Errorf("DaemonSet: %v", err)
	}
	if _, err := cs.CoreV1().Services(ns.Name).Create(ctx, &svc, dry); err != nil {
		t.Errorf("Service: %v", err)
	}
}
