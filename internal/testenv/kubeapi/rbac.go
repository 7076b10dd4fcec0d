package kubeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
)

// ClusterRoleFromManifest reads the (first) ClusterRole of a YAML manifest
// such as deploy/plugin-rbac.yaml.
func ClusterRoleFromManifest(t testing.TB, path string) *rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", path, err)
		}
		var meta metav1.TypeMeta
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind == "ClusterRole" {
			var cr rbacv1.ClusterRole
			if err := json.Unmarshal(raw, &cr); err != nil {
				t.Fatal(err)
			}
			return &cr
		}
	}
	t.Fatalf("%s has no ClusterRole", path)
	return nil
}

// GrantRestricted creates the ClusterRole of the manifest and binds it to
// RestrictedUser, who then has exactly those rights.
func (c *Cluster) GrantRestricted(t testing.TB, manifest string) *rbacv1.ClusterRole {
	t.Helper()
	cr := ClusterRoleFromManifest(t, manifest)
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())
	ctx := context.Background()
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: cr.Name + "-restricted"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: RestrictedUser}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cr
}
