package analysis

import (
	"reflect"
	"strings"
	"testing"

	"github.com/livemap/servicemap/pkg/model"
)

func keys(pairs ...string) []model.EdgeKey {
	var out []model.EdgeKey
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, model.EdgeKey{Source: pairs[i], Target: pairs[i+1]})
	}
	return out
}

func TestParseDeclaredForms(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		services   []string
		edges      []model.EdgeKey
	}{
		{"list", `
services:
  - name: checkout
    dependsOn: [payment, cart]
  - name: payment
    dependsOn:
      - bank
  - name: cart
  - name: checkout   # listed twice: the union
    dependsOn: [cart, tax]
`, []string{"bank", "cart", "checkout", "payment", "tax"},
			keys("checkout", "cart", "checkout", "payment", "checkout", "tax", "payment", "bank")},
		{"map", `
checkout: [payment, cart]
payment: [bank]
bank: []
cart:
`, []string{"bank", "cart", "checkout", "payment"},
			keys("checkout", "cart", "checkout", "payment", "payment", "bank")},
		{"backstage", `
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout
  namespace: shop
spec:
  type: service
  owner: team-a
  dependsOn:
    - component:default/payment
    - resource:shop/orders-db
    - Component:cart
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata:
  name: orders-db
spec:
  type: database
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: payment-api
spec:
  type: openapi
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payment
---
`, []string{"cart", "checkout", "orders-db", "payment"},
			keys("checkout", "cart", "checkout", "orders-db", "checkout", "payment")},
		{"mixed stream", `
services:
  - {name: a, dependsOn: [b]}
---
c: [a]
---
kind: Component
metadata: {name: d}
spec: {dependsOn: ["component:default/c"]}
`, []string{"a", "b", "c", "d"}, keys("a", "b", "c", "a", "d", "c")},
		{"empty", "", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDeclared(tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.Services, tc.services) || !reflect.DeepEqual(d.Edges, tc.edges) {
				t.Fatalf("services %v\nedges %v", d.Services, d.Edges)
			}
		})
	}
}

func TestParseDeclaredErrorsNameLineAndEntry(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"services:\n  - name: a\n  - dependsOn: [b]\n", "document 1, line 3: services[1]: name is missing"},
		{"services:\n  - name: a\n    dependsOn: b\n", "document 1, line 3: services[0] (a): dependsOn must be a list of names"},
		{"services:\n  - name: a\n    dependsOn: [b, {x: 1}]\n", "document 1, line 3: services[0] (a): dependsOn[1] must be a non-empty name"},
		{"services:\n  - just-a-name\n", "document 1, line 2: services[0]: expected {name: ..., dependsOn: [...]}"},
		{"a: [b]\n---\nc: d\n", "document 2, line 3: c must be a list of names"},
		{"- a\n- b\n", "document 1, line 1: expected a mapping"},
		{"kind: Component\nmetadata:\n  title: x\n", "document 1, line 3: Component: metadata.name is missing"},
		{"kind: Component\nmetadata: {name: x}\nspec:\n  dependsOn: [\"component:default/\"]\n", `document 1, line 4: Component x: spec.dependsOn[0]: "component:default/" names no entity`},
		{"a: [b\n", "document 1: yaml: line 1"},
	} {
		_, err := ParseDeclared(tc.yaml)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

func TestEntityName(t *testing.T) {
	for ref, want := range map[string]string{
		"component:default/b": "b", "resource:db": "db", "default/c": "c", "plain": "plain",
	} {
		if got := entityName(ref); got != want {
			t.Errorf("%s: %q", ref, got)
		}
	}
}

// Whatever the text, ParseDeclared returns an error or a sorted,
// duplicate-free declaration; it never panics.
func FuzzParseDeclared(f *testing.F) {
	for _, seed := range []string{
		"services:\n  - name: a\n    dependsOn: [b]\n",
		"a: [b, c]\n---\nkind: Component\nmetadata: {name: x}\nspec: {dependsOn: [\"component:default/y\"]}\n",
		"- x\n", "a: b", "{", "---\n---\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		d, err := ParseDeclared(text)
		if err != nil {
			return
		}
		for k := 1; k < len(d.Edges); k++ {
			if cmpKey(d.Edges[k-1], d.Edges[k]) >= 0 {
				t.Fatalf("edges not sorted and unique: %v", d.Edges)
			}
		}
		for _, e := range d.Edges {
			if e.Source == "" || e.Target == "" {
				t.Fatalf("empty name in %v", e)
			}
		}
	})
}
