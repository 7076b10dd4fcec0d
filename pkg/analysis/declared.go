package analysis

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/livemap/servicemap/pkg/model"
)

// Declared is an architecture as someone wrote it down: who depends on whom.
type Declared struct {
	Services []string        // every service named, sorted
	Edges    []model.EdgeKey // Source depends on (calls) Target; sorted, no duplicates
}

// ParseDeclared reads a declared architecture from YAML. A stream may hold
// several documents, each in one of three forms (docs/incident.md has
// examples):
//
//   - list:      services: [{name: a, dependsOn: [b, c]}]
//   - map:       a: [b, c]
//   - Backstage: catalog-info.yaml entities (kind Component or Resource,
//     metadata.name, spec.dependsOn entity refs such as
//     "component:default/b"; the kind and namespace are dropped). Other
//     kinds (API, System, Group, ...) are skipped.
//
// Errors give the document, line and entry that are wrong.
func ParseDeclared(yamlText string) (*Declared, error) {
	p := declParser{deps: map[string][]string{}}
	dec := yaml.NewDecoder(strings.NewReader(yamlText))
	for doc := 1; ; doc++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if err := p.document(&root); err != nil {
			return nil, fmt.Errorf("document %d, %w", doc, err)
		}
	}
	return p.result(), nil
}

type declParser struct {
	deps map[string][]string // a service listed twice gets the union
}

func (p *declParser) add(service string, deps ...string) {
	p.deps[service] = append(p.deps[service], deps...)
}

func (p *declParser) result() *Declared {
	d := &Declared{}
	names := map[string]bool{}
	for s, deps := range p.deps {
		names[s] = true
		for _, t := range deps {
			names[t] = true
			d.Edges = append(d.Edges, model.EdgeKey{Source: s, Target: t})
		}
	}
	for n := range names {
		d.Services = append(d.Services, n)
	}
	slices.Sort(d.Services)
	slices.SortFunc(d.Edges, cmpKey)
	d.Edges = slices.Compact(d.Edges)
	return d
}

func (p *declParser) document(root *yaml.Node) error {
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil // an empty document, e.g. a trailing "---"
	}
	top := root.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	if top.Kind != yaml.MappingNode {
		return lineErr(top, "expected a mapping (services:, a map of name: [dependencies] or a Backstage entity)")
	}
	switch {
	case get(top, "apiVersion") != nil || get(top, "kind") != nil:
		return p.backstage(top)
	case get(top, "services") != nil && get(top, "services").Kind == yaml.SequenceNode:
		return p.list(get(top, "services"))
	default:
		return p.mapForm(top)
	}
}

func (p *declParser) list(seq *yaml.Node) error {
	for k, item := range seq.Content {
		entry := fmt.Sprintf("services[%d]", k)
		if item.Kind != yaml.MappingNode {
			return lineErr(item, entry+": expected {name: ..., dependsOn: [...]}")
		}
		name, err := scalar(get(item, "name"), item, entry+": name")
		if err != nil {
			return err
		}
		entry = fmt.Sprintf("services[%d] (%s)", k, name)
		deps, err := names(get(item, "dependsOn"), entry+": dependsOn", func(s string) string { return s })
		if err != nil {
			return err
		}
		p.add(name, deps...)
	}
	return nil
}

func (p *declParser) mapForm(m *yaml.Node) error {
	for k := 0; k+1 < len(m.Content); k += 2 {
		key, val := m.Content[k], m.Content[k+1]
		name, err := scalar(key, key, "service name")
		if err != nil {
			return err
		}
		deps, err := names(val, name, func(s string) string { return s })
		if err != nil {
			return err
		}
		p.add(name, deps...)
	}
	return nil
}

func (p *declParser) backstage(m *yaml.Node) error {
	kind, err := scalar(get(m, "kind"), m, "kind")
	if err != nil {
		return err
	}
	switch strings.ToLower(kind) {
	case "component", "resource":
	default:
		return nil // APIs, systems, groups ... are not nodes on the map
	}
	meta := get(m, "metadata")
	if meta == nil || meta.Kind != yaml.MappingNode {
		return lineErr(m, kind+": metadata must be a mapping with a name")
	}
	name, err := scalar(get(meta, "name"), meta, kind+": metadata.name")
	if err != nil {
		return err
	}
	var deps []string
	if spec := get(m, "spec"); spec != nil && spec.Kind == yaml.MappingNode {
		deps, err = names(get(spec, "dependsOn"), kind+" "+name+": spec.dependsOn", entityName)
		if err != nil {
			return err
		}
	}
	p.add(name, deps...)
	return nil
}

// entityName drops the kind and namespace of a Backstage entity reference:
// "component:default/b" → "b", "resource:db" → "db".
func entityName(ref string) string {
	if i := strings.IndexByte(ref, ':'); i >= 0 {
		ref = ref[i+1:]
	}
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		ref = ref[i+1:]
	}
	return ref
}

// get returns the value of key in a mapping node, or nil.
func get(m *yaml.Node, key string) *yaml.Node {
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == key {
			return m.Content[k+1]
		}
	}
	return nil
}

// scalar reads a non-empty string; parent gives the line when n is missing.
func scalar(n, parent *yaml.Node, what string) (string, error) {
	if n == nil {
		return "", lineErr(parent, what+" is missing")
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || strings.TrimSpace(n.Value) == "" {
		return "", lineErr(n, what+" must be a non-empty name")
	}
	return strings.TrimSpace(n.Value), nil
}

// names reads an optional list of names; null or absent is no names.
func names(n *yaml.Node, what string, clean func(string) string) ([]string, error) {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, lineErr(n, what+" must be a list of names")
	}
	out := make([]string, 0, len(n.Content))
	for k, item := range n.Content {
		s, err := scalar(item, n, fmt.Sprintf("%s[%d]", what, k))
		if err != nil {
			return nil, err
		}
		if s = clean(s); s == "" {
			return nil, lineErr(item, fmt.Sprintf("%s[%d]: %q names no entity", what, k, item.Value))
		}
		out = append(out, s)
	}
	return out, nil
}

func lineErr(n *yaml.Node, msg string) error {
	return fmt.Errorf("line %d: %s", n.Line, msg)
}
