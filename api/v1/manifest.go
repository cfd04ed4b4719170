package v1

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// MaxManifestSize bounds one manifest document.
const MaxManifestSize = 1 << 20

// A manifest is a YAML (or JSON) document that describes one object. Two
// shapes are accepted:
//
//   - the flat form people write: kind, name, namespace, labels and
//     annotations at the top, every other key a field of the object's spec
//     (kind: App, name: hello, image: hello:v1, replicas: 3);
//   - the API form that `gantry get -o yaml` prints: kind, metadata, spec
//     (status is ignored).
//
// A file may hold several documents separated by "---" lines.

// ManifestError locates a problem in a multi-document manifest.
type ManifestError struct {
	Doc  int    // 1-based document number
	Kind string // kind, when it could be read
	Name string // name, when it could be read
	Err  error
}

func (e *ManifestError) Error() string {
	what := fmt.Sprintf("document %d", e.Doc)
	if e.Kind != "" && e.Name != "" {
		what += fmt.Sprintf(" (%s/%s)", strings.ToLower(e.Kind), e.Name)
	}
	return what + ": " + e.Err.Error()
}

func (e *ManifestError) Unwrap() error { return e.Err }

// SplitDocuments splits a multi-document YAML stream at "---" lines and
// drops documents that hold only comments or whitespace.
func SplitDocuments(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), MaxManifestSize)
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for sc.Scan() {
		line := sc.Bytes()
		if sep, rest := separator(line); sep {
			flush()
			// "--- {kind: App, …}" or "--- !!map": what follows the
			// marker on its line starts the next document.
			if len(rest) > 0 {
				cur.Write(rest)
				cur.WriteByte('\n')
			}
			continue
		}
		if cur.Len()+len(line) > MaxManifestSize {
			return nil, fmt.Errorf("document %d is larger than %d bytes", len(docs)+1, MaxManifestSize)
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("a line is longer than %d bytes", MaxManifestSize)
		}
		return nil, err
	}
	flush()
	var out [][]byte
	for _, d := range docs {
		for _, o := range jsonStream(d) {
			out = append(out, listItems(o)...)
		}
	}
	return out, nil
}

// listItems returns the items of a document that is a list as `gantry get
// -o yaml|json` writes one (kind: AppList, items: [...]), one document
// each, so that its output can be applied, diffed or deleted as kubectl's
// can; any other document is returned as it is.
func listItems(doc []byte) [][]byte {
	if !bytes.Contains(doc, []byte("List")) || !bytes.Contains(doc, []byte("items")) {
		return [][]byte{doc}
	}
	j, err := YAMLToJSON(doc)
	if err != nil {
		return [][]byte{doc}
	}
	var list struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	// Without a list of items (none, null, or not a list) it is no list
	// get wrote: left as it is, it is refused for its kind, not read as
	// nothing in silence.
	if json.Unmarshal(j, &list) != nil || !strings.HasSuffix(list.Kind, "List") || len(list.Kind) == len("List") || list.Items == nil {
		return [][]byte{doc}
	}
	// An item without a kind takes the list's.
	kind, _ := json.Marshal(strings.TrimSuffix(list.Kind, "List"))
	items := make([][]byte, 0, len(list.Items))
	for _, it := range list.Items {
		var top map[string]json.RawMessage
		if json.Unmarshal(it, &top) == nil && top != nil {
			if _, ok := top["kind"]; !ok {
				top["kind"] = kind
				it, _ = json.Marshal(top)
			}
		}
		items = append(items, it)
	}
	return items
}

// jsonStream splits a document that is a stream of JSON objects (one per
// line, as `jq -c` writes them, or back to back) into one document per
// object, as kubectl reads such a stream. Anything else, a single object
// included, comes back as it is, for the YAML decoder to judge.
func jsonStream(doc []byte) [][]byte {
	if t := bytes.TrimSpace(doc); len(t) == 0 || t[0] != '{' {
		return [][]byte{doc}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	var objs [][]byte
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil || len(v) == 0 || v[0] != '{' {
			return [][]byte{doc}
		}
		objs = append(objs, append([]byte(nil), v...))
	}
	if len(objs) < 2 {
		return [][]byte{doc}
	}
	return objs
}

// separator reports whether line ends a document: a "---" marker (with
// what follows it on the line, the start of the next document, as rest)
// or a "..." end marker. YAML wants a space or a line end after either;
// "---x" is content.
func separator(line []byte) (sep bool, rest []byte) {
	for _, m := range []string{"---", "..."} {
		after, ok := bytes.CutPrefix(line, []byte(m))
		if !ok || (len(after) > 0 && after[0] != ' ' && after[0] != '\t' && after[0] != '\r') {
			continue
		}
		rest = bytes.TrimSpace(after)
		if len(rest) > 0 && rest[0] == '#' {
			rest = nil
		}
		if m == "..." && len(rest) > 0 {
			return false, nil // not a marker YAML knows; let the decoder say
		}
		return true, rest
	}
	return false, nil
}

func hasContent(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("...")) {
			return true
		}
	}
	return false
}

// DecodeManifests reads every document of a YAML stream into objects,
// applies defaults and validates them. It returns all objects that decoded
// and a joined error holding a *ManifestError for each document that did
// not decode or validate.
func DecodeManifests(r io.Reader) ([]Object, error) { return DecodeManifestsIn(r, "") }

// DecodeManifestsIn is DecodeManifests with ns as the namespace of the
// namespaced objects whose documents name none ("" means the default).
// A document that names one keeps it, so a caller can tell it from ns.
func DecodeManifestsIn(r io.Reader, ns string) ([]Object, error) {
	docs, err := SplitDocuments(r)
	if err != nil {
		return nil, err
	}
	var objs []Object
	var errs []error
	for i, d := range docs {
		o, err := decodeManifest(d, ns)
		if err != nil {
			me := &ManifestError{Doc: i + 1, Err: err}
			if o != nil {
				me.Kind, me.Name = o.GetType().Kind, o.GetMeta().Name
			}
			errs = append(errs, me)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// DecodeRefsIn reads a YAML stream as DecodeManifestsIn does, for a
// caller that needs only which objects the documents name (a delete):
// a document that decodes but does not validate still names its kind,
// namespace and name, and is returned with the others. Only documents
// that name no object are errors.
func DecodeRefsIn(r io.Reader, ns string) ([]Object, error) {
	docs, err := SplitDocuments(r)
	if err != nil {
		return nil, err
	}
	var objs []Object
	var errs []error
	for i, d := range docs {
		o, err := decodeManifest(d, ns)
		var fe FieldErrors
		if err != nil && (o == nil || o.GetMeta().Name == "" || !errors.As(err, &fe)) {
			me := &ManifestError{Doc: i + 1, Err: err}
			if o != nil {
				me.Kind, me.Name = o.GetType().Kind, o.GetMeta().Name
			}
			errs = append(errs, me)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

var metaKeys = map[string]bool{"kind": true, "apiVersion": true, "name": true, "namespace": true, "labels": true, "annotations": true}

// DecodeManifest decodes, defaults and validates one document. When
// validation fails it returns the object as well as the FieldErrors, so
// callers can name it.
func DecodeManifest(doc []byte) (Object, error) { return decodeManifest(doc, "") }

func decodeManifest(doc []byte, ns string) (Object, error) {
	j, err := YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return nil, errors.New("a manifest must be a mapping with a kind, such as kind: App")
	}
	var kind, apiVersion string
	if raw, ok := top["kind"]; !ok || json.Unmarshal(raw, &kind) != nil || kind == "" {
		return nil, errors.New("kind is required (App, Namespace, …)")
	}
	if raw, ok := top["apiVersion"]; ok {
		if json.Unmarshal(raw, &apiVersion) != nil || (apiVersion != Version && apiVersion != "gantry.dev/"+Version) {
			return nil, fmt.Errorf("apiVersion %s is not supported: use %s", raw, Version)
		}
	}
	o, err := NewObject(kind)
	if err != nil {
		return nil, fmt.Errorf("%w: known kinds are %s", err, kindNames())
	}
	var decodeErr error
	if _, apiForm := top["metadata"]; apiForm {
		delete(top, "status")
		b, _ := json.Marshal(top)
		decodeErr = strictUnmarshal(b, o)
	} else {
		decodeErr = decodeFlat(top, o)
	}
	// Unknown fields leave a value to validate: report them and what
	// else is wrong together, not one round of fixes at a time.
	var unknown unknownFields
	if decodeErr != nil && !errors.As(decodeErr, &unknown) {
		return nil, decodeErr
	}
	k, _ := KindOf(o)
	*o.GetType() = TypeMeta{Kind: k.Kind, APIVersion: Version}
	m := o.GetMeta()
	m.Revision, m.UID, m.Deleting = 0, "", nil
	errs := FieldErrors(unknown)
	if sec, ok := o.(*Secret); ok {
		// Reads list a secret's keys and never its values: a manifest
		// with keys and no values is one read back, and applied it would
		// empty the secret.
		if len(sec.Keys) > 0 && len(sec.Data) == 0 && len(sec.StringData) == 0 {
			errs = append(errs, FieldError{Field: "keys", Message: "a secret read back names its keys but never holds its values: give them in data or stringData, or use gantry secret set"})
		}
		// Only the server seals; what a manifest says about it is ignored.
		sec.Sealed, sec.Keys = nil, nil
	}
	if k.Namespaced && m.Namespace == "" {
		m.Namespace = ns
	}
	SetDefaults(o)
	if errs = append(errs, Validate(o)...); len(errs) > 0 {
		return o, errs
	}
	return o, nil
}

func decodeFlat(top map[string]json.RawMessage, o Object) error {
	meta := map[string]json.RawMessage{}
	spec := map[string]json.RawMessage{}
	k, _ := KindOf(o)
	for key, v := range top {
		switch {
		case key == "namespace" && k != nil && !k.Namespaced && specHasField(o, "namespace"):
			// Cluster-scoped objects have no namespace: a namespace
			// key is theirs (a RoleBinding's).
			spec[key] = v
		case key == "kind" || key == "apiVersion":
		case metaKeys[key]:
			meta[key] = v
		default:
			spec[key] = v
		}
	}
	mb, _ := json.Marshal(meta)
	if err := strictUnmarshal(mb, o.GetMeta()); err != nil {
		return err
	}
	if len(spec) == 0 {
		return nil
	}
	sv := reflect.ValueOf(o).Elem().FieldByName("Spec")
	if !sv.IsValid() {
		// Kinds without a spec (Secret) keep their fields at the top.
		b, _ := json.Marshal(spec)
		return strictUnmarshal(b, o)
	}
	sb, _ := json.Marshal(spec)
	if err := strictUnmarshal(sb, sv.Addr().Interface()); err != nil {
		return fmt.Errorf("%w", prefixField(err, "spec."))
	}
	return nil
}

// YAMLToJSON converts one YAML document to JSON. It refuses a key given
// twice in one mapping (rather than letting the last one win), except
// where the document uses merge keys (<<: *anchor), whose point is to
// override what they bring in; it refuses a second document, which the
// conversion would drop without a word; and it keeps the values of env
// maps as written (see quoteEnvValues).
func YAMLToJSON(doc []byte) ([]byte, error) {
	root, err := parseOneDocument(doc)
	if err != nil {
		return nil, err
	}
	if root != nil {
		if err := checkExpansion(root); err != nil {
			return nil, err
		}
		doc = quoteEnvValues(doc, root)
	}
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil && mergeKey.Match(doc) {
		if lax, laxErr := yaml.YAMLToJSON(doc); laxErr == nil {
			return lax, nil
		}
	}
	return j, err
}

// ErrMultipleDocuments is YAMLToJSON's error for a stream of more than
// one document.
var ErrMultipleDocuments = errors.New("more than one YAML document (--- line): send one object per request, or use `gantry apply -f`, which sends each document of a file on its own")

// parseOneDocument parses doc into a node tree and refuses a second
// document after the first; a document that holds nothing (a "---" at
// the end) does not count. It returns a nil node when the YAML does not
// parse, leaving the converter to say what is wrong.
func parseOneDocument(doc []byte) (*yaml3.Node, error) {
	dec := yaml3.NewDecoder(bytes.NewReader(doc))
	var root yaml3.Node
	if err := dec.Decode(&root); err != nil {
		return nil, nil
	}
	for {
		var next yaml3.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			return &root, nil
		}
		if err != nil || !isEmptyDocument(&next) {
			return nil, ErrMultipleDocuments
		}
	}
}

func isEmptyDocument(n *yaml3.Node) bool {
	if n.Kind != yaml3.DocumentNode {
		return false
	}
	for _, c := range n.Content {
		if c.Kind != yaml3.ScalarNode || c.Tag != "!!null" {
			return false
		}
	}
	return true
}

// envPaths are where env maps sit in a document: an App's env in the
// flat and the API form, and the template of a Revision or Instance.
var envPaths = [][]string{{"env"}, {"spec", "env"}, {"template", "env"}, {"spec", "template", "env"}}

// quoteEnvValues returns doc with every plain (unquoted) scalar key and
// value of an env map double-quoted, so that it reaches the environment
// as it is written: the conversion to JSON would otherwise read 1.50 as
// the number 1.5, 007 as 7, 0x1F as 31, and yes or N (YAML 1.1) as true
// or false. Nulls (no value, ~, null) stay null, an empty value. The
// document is edited as text, at the positions the parser reports, so
// that everything else in it, and what the converter says about it, is
// unchanged; a scalar whose text is not where the parser says is left as
// it is. Anchored env maps and keys are left alone, and an anchored value
// is quoted only when every alias of it is in an env map too: an alias
// elsewhere in the document (replicas: *n) must read it as before.
func quoteEnvValues(doc []byte, root *yaml3.Node) []byte {
	var edits []textEdit
	seen := map[*yaml3.Node]bool{}
	aliases := map[*yaml3.Node][]*yaml3.Node{}
	aliasesOf(root, aliases, 0)
	inEnv := map[*yaml3.Node]bool{}
	var anchored []*yaml3.Node
	var visit func(m *yaml3.Node)
	visit = func(m *yaml3.Node) {
		m = unalias(m)
		if m == nil || m.Kind != yaml3.MappingNode || m.Anchor != "" || seen[m] {
			return
		}
		seen[m] = true
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if k.Kind == yaml3.ScalarNode && k.Style == 0 && k.Value == "<<" {
				// A merge key brings in a mapping, or a list of them.
				if t := unalias(v); t != nil && t.Kind == yaml3.SequenceNode {
					for _, e := range t.Content {
						visit(e)
					}
				} else {
					visit(v)
				}
				continue
			}
			inEnv[k], inEnv[v] = true, true
			if k.Kind == yaml3.ScalarNode && k.Anchor == "" {
				if e, ok := quoteEdit(k); ok {
					edits = append(edits, e)
				}
			}
			if v.Anchor != "" {
				anchored = append(anchored, v) // decided once every alias is known
			} else if e, ok := quoteEdit(v); ok {
				edits = append(edits, e)
			}
		}
	}
	for _, p := range envPaths {
		visit(lookupPath(root, p))
	}
	for _, v := range anchored {
		if slices.ContainsFunc(aliases[v], func(a *yaml3.Node) bool { return !inEnv[a] }) {
			continue
		}
		if e, ok := quoteEdit(v); ok {
			edits = append(edits, e)
		}
	}
	return applyEdits(doc, edits)
}

// aliasesOf maps each anchored node of the tree under n to the alias
// nodes that name it.
func aliasesOf(n *yaml3.Node, out map[*yaml3.Node][]*yaml3.Node, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	if n.Kind == yaml3.AliasNode {
		out[n.Alias] = append(out[n.Alias], n)
		return
	}
	for _, c := range n.Content {
		aliasesOf(c, out, depth+1)
	}
}

// unalias follows an alias to the node it names.
func unalias(n *yaml3.Node) *yaml3.Node {
	for i := 0; n != nil && n.Kind == yaml3.AliasNode; i++ {
		if i == maxDepth {
			return nil
		}
		n = n.Alias
	}
	return n
}

// lookupPath follows keys from a document's root mapping.
func lookupPath(root *yaml3.Node, path []string) *yaml3.Node {
	n := root
	if n.Kind == yaml3.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, key := range path {
		n = unalias(n)
		if n == nil || n.Kind != yaml3.MappingNode {
			return nil
		}
		var next *yaml3.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml3.ScalarNode && k.Value == key {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

// textEdit replaces old, found at a line and column (1-based, the column
// counted in characters, as the parser counts it), with new.
type textEdit struct {
	line, column int
	old, new     string
}

// quoteEdit is the edit that quotes one env key or value: a plain scalar
// where it stands (after its anchor, which stays), or an alias of a plain
// scalar where the alias stands.
func quoteEdit(v *yaml3.Node) (textEdit, bool) {
	t := unalias(v)
	if t == nil || t.Kind != yaml3.ScalarNode || t.Style != 0 || t.Tag == "!!null" || strings.ContainsAny(t.Value, "\n\r") {
		return textEdit{}, false
	}
	e := textEdit{line: v.Line, column: v.Column, old: t.Value, new: jsonString(t.Value)}
	switch {
	case v.Kind == yaml3.AliasNode:
		e.old = "*" + v.Value
	case v.Anchor != "":
		e.old, e.new = "&"+v.Anchor+" "+e.old, "&"+v.Anchor+" "+e.new
	}
	return e, true
}

// jsonString quotes s as JSON does, which YAML reads as a double-quoted
// scalar with the same value.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// applyEdits makes the edits whose old text is where they say, in one
// pass over doc.
func applyEdits(doc []byte, edits []textEdit) []byte {
	if len(edits) == 0 {
		return doc
	}
	starts := lineStarts(doc)
	type at struct {
		off int
		e   textEdit
	}
	var found []at
	for _, e := range edits {
		off, ok := offsetOf(doc, starts, e.line, e.column)
		if ok && bytes.HasPrefix(doc[off:], []byte(e.old)) {
			found = append(found, at{off, e})
		}
	}
	if len(found) == 0 {
		return doc
	}
	sort.Slice(found, func(i, j int) bool { return found[i].off < found[j].off })
	var out bytes.Buffer
	out.Grow(len(doc) + 2*len(found))
	next := 0
	for _, f := range found {
		if f.off < next {
			continue // overlaps the edit before
		}
		out.Write(doc[next:f.off])
		out.WriteString(f.e.new)
		next = f.off + len(f.e.old)
	}
	out.Write(doc[next:])
	return out.Bytes()
}

// lineStarts are the byte offsets at which the lines of doc begin, with
// lines broken where the YAML parser breaks them: at \n, \r\n, a lone
// \r, and NEL, LS and PS (U+0085, U+2028, U+2029).
func lineStarts(doc []byte) []int {
	starts := []int{0}
	for i := 0; i < len(doc); i++ {
		switch {
		case doc[i] == '\r' && i+1 < len(doc) && doc[i+1] == '\n':
			i++
			starts = append(starts, i+1)
		case doc[i] == '\n' || doc[i] == '\r':
			starts = append(starts, i+1)
		case doc[i] == 0xC2 && i+1 < len(doc) && doc[i+1] == 0x85:
			i++
			starts = append(starts, i+1)
		case doc[i] == 0xE2 && i+2 < len(doc) && doc[i+1] == 0x80 && (doc[i+2] == 0xA8 || doc[i+2] == 0xA9):
			i += 2
			starts = append(starts, i+1)
		}
	}
	return starts
}

// offsetOf turns a 1-based line and column (counted in characters) into a
// byte offset in doc, whose lines begin at starts.
func offsetOf(doc []byte, starts []int, line, column int) (int, bool) {
	if line < 1 || line > len(starts) {
		return 0, false
	}
	off := starts[line-1]
	for c := 1; c < column; c++ {
		if off >= len(doc) || doc[off] == '\n' || doc[off] == '\r' {
			return 0, false
		}
		_, size := utf8.DecodeRune(doc[off:])
		off += size
	}
	return off, true
}

// mergeKey finds a merge key (<<: *anchor) as a mapping key, not a "<<"
// anywhere (a heredoc in an argument).
var mergeKey = regexp.MustCompile(`(^|[\s{,])<<\s*:`)

// maxExpanded bounds what a document may grow to through aliases: the
// YAML decoder's own limit on aliasing counts nodes, not bytes, so a few
// hundred aliases of a large scalar would otherwise make a small body
// expand to gigabytes.
const maxExpanded = 8 * MaxManifestSize

// maxDepth bounds the nesting of a document with aliases, far beyond
// any manifest's.
const maxDepth = 200

// checkExpansion refuses a document whose aliases would expand it past
// maxExpanded, measuring the node tree without expanding it.
func checkExpansion(root *yaml3.Node) error {
	sizes := map[*yaml3.Node]int64{}
	var size func(n *yaml3.Node, depth int) int64
	size = func(n *yaml3.Node, depth int) int64 {
		if n == nil {
			return 0
		}
		if depth > maxDepth {
			return maxExpanded + 1 // deeper than any manifest: refused
		}
		if s, ok := sizes[n]; ok {
			return s
		}
		s := int64(len(n.Value)) + 2
		if n.Kind == yaml3.AliasNode {
			s = size(n.Alias, depth+1)
		}
		for _, c := range n.Content {
			s += size(c, depth+1)
			if s > maxExpanded {
				break
			}
		}
		sizes[n] = s
		return s
	}
	if size(root, 0) > maxExpanded {
		return fmt.Errorf("the document expands to more than %d bytes through its YAML aliases (*name), or nests deeper than %d levels", maxExpanded, maxDepth)
	}
	return nil
}

// strictUnmarshal decodes one JSON value and refuses unknown fields,
// turning encoding/json's messages into field paths users recognise. Data
// after the value is an error, not something to ignore.
func strictUnmarshal(b []byte, into any) error {
	if err := trailingData(b); err != nil {
		return err
	}
	if dup := duplicateKeys(b); len(dup) > 0 {
		return dup
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// The same, with the list indexes of its path.
			if fe := fieldProblems(reflect.TypeOf(into), b, ""); len(fe) > 0 {
				return fe
			}
			if te.Field == "" {
				return fmt.Errorf("must be %s, not %s", jsonTypeName(te.Type), te.Value)
			}
			return FieldErrors{{Field: lowerFirstPath(jsonPath(te.Field)), Message: fmt.Sprintf("must be %s, not %s", jsonTypeName(te.Type), te.Value)}}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			// Every unknown field, each with its whole path (encoding/json
			// names the first alone, by its last key). The value is
			// decoded without them, so that validation can say what else
			// is wrong in the same answer.
			fe := fieldProblems(reflect.TypeOf(into), b, "")
			if len(fe) == 0 {
				fe = FieldErrors{{Field: strings.Trim(f, `"`), Message: unknownFieldMessage}}
			}
			if json.Unmarshal(b, into) == nil {
				return unknownFields(fe)
			}
			return fe
		}
		// A value our own types refuse: say where it is.
		if fe := fieldProblems(reflect.TypeOf(into), b, ""); len(fe) > 0 {
			return fe
		}
		return err
	}
	if fe := fieldProblems(reflect.TypeOf(into), b, ""); len(fe) > 0 {
		return fe
	}
	return nil
}

// trailingData refuses anything but white space after the first JSON
// value of b: a second object or stray text would otherwise be dropped
// without a word. A first value that is not valid JSON is left to the
// decoder to describe.
func trailingData(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var first json.RawMessage
	if dec.Decode(&first) != nil {
		return nil
	}
	rest := bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")
	if len(rest) == 0 {
		return nil
	}
	return fmt.Errorf("unexpected data after the first JSON value, at byte %d: send one object per request, or use `gantry apply -f`, which sends each document of a file on its own", len(b)-len(rest))
}

const unknownFieldMessage = "unknown field: check its spelling and indentation"

// unknownFields is strictUnmarshal's error when the only problems were
// unknown fields: the value was decoded without them, and may be
// validated for the rest.
type unknownFields FieldErrors

func (u unknownFields) Error() string { return FieldErrors(u).Error() }

// Is makes it an ErrInvalid, as FieldErrors are.
func (u unknownFields) Is(target error) bool { return target == ErrInvalid }

// As lets errors.As find the FieldErrors.
func (u unknownFields) As(target any) bool {
	if fe, ok := target.(*FieldErrors); ok {
		*fe = FieldErrors(u)
		return true
	}
	return false
}

// UnmarshalStrict decodes JSON into v as manifests are decoded: unknown
// fields, keys whose case differs from a field's, keys given twice and
// values of the wrong type are errors, as FieldErrors with their paths
// where they have one.
func UnmarshalStrict(b []byte, v any) error { return strictUnmarshal(b, v) }

func prefixField(err error, prefix string) error {
	var fe FieldErrors
	if errors.As(err, &fe) {
		out := make(FieldErrors, len(fe))
		for i, e := range fe {
			out[i] = FieldError{Field: prefix + e.Field, Message: e.Message}
		}
		var soft unknownFields
		if errors.As(err, &soft) {
			return unknownFields(out)
		}
		return out
	}
	return err
}

// jsonPath drops from encoding/json's path of a field the Go names of
// embedded structs (AppSpec's Template), which are no part of the JSON:
// every JSON name of the API starts in lower case.
func jsonPath(p string) string {
	parts := strings.Split(p, ".")
	out := parts[:0]
	for i, s := range parts {
		if i < len(parts)-1 && s != "" && s[0] >= 'A' && s[0] <= 'Z' {
			continue
		}
		out = append(out, s)
	}
	return strings.Join(out, ".")
}

func lowerFirstPath(p string) string {
	parts := strings.Split(p, ".")
	for i, s := range parts {
		if s != "" {
			parts[i] = strings.ToLower(s[:1]) + s[1:]
		}
	}
	return strings.Join(parts, ".")
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func kindNames() string {
	var names []string
	for _, k := range Kinds() {
		names = append(names, k.Kind)
	}
	return strings.Join(names, ", ")
}

// specHasField reports whether the object's spec has a JSON field name.
func specHasField(o Object, name string) bool {
	sv := reflect.ValueOf(o).Elem().FieldByName("Spec")
	if !sv.IsValid() {
		return false
	}
	t := sv.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if tag == name {
			return true
		}
	}
	return false
}
