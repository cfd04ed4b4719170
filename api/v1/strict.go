package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// What encoding/json lets pass and a manifest must not: keys that match a
// field only when case is ignored (encoding/json takes "Replicas" for
// "replicas"), the same key twice in one object (the last one silently
// wins), and errors of the API's own value types (durations, counts or
// percentages, quantities), which encoding/json reports without saying
// where.

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// fieldProblems walks the JSON value raw against type t and reports, with
// their paths under path, keys whose case differs from the field's and
// values that t's own decoders refuse.
func fieldProblems(t reflect.Type, raw json.RawMessage, path string) FieldErrors {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil // null leaves the field unset, whatever its type
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) {
				return FieldErrors{{Field: path, Message: err.Error()}}
			}
		}
		// A list with a decoder of its own (EnvList takes a map too)
		// decodes its items without encoding/json's strictness: walk
		// them when it is given as a list.
		if t.Kind() != reflect.Slice || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
			return nil
		}
	}
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	var out FieldErrors
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil // not an object: encoding/json reports the type
		}
		fields := jsonFields(t)
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			v := obj[key]
			if f, ok := fields[key]; ok {
				out = append(out, fieldProblems(f.Type, v, join(key))...)
				continue
			}
			cased := false
			for _, name := range slices.Sorted(maps.Keys(fields)) {
				if strings.EqualFold(name, key) {
					out = append(out, FieldError{Field: join(key), Message: fmt.Sprintf("unknown field: did you mean %q? Field names are case-sensitive", name)})
					cased = true
					break
				}
			}
			if !cased {
				out = append(out, FieldError{Field: join(key), Message: unknownFieldMessage})
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte is base64 text
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		for i, v := range items {
			out = append(out, fieldProblems(t.Elem(), v, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			out = append(out, fieldProblems(t.Elem(), obj[key], join(key))...)
		}
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		// encoding/json names a value of the wrong type by its field
		// path without list indexes (spec.env.value); here it has them.
		if got := jsonKind(raw); got != jsonKindOf(t.Kind()) {
			out = append(out, FieldError{Field: path, Message: fmt.Sprintf("must be %s, not %s", jsonTypeName(t), got)})
		}
	}
	return out
}

// jsonKind names the kind of the JSON value raw as encoding/json's type
// errors do.
func jsonKind(raw json.RawMessage) string {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return ""
	}
	switch b[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func jsonKindOf(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	}
	return "number"
}

// jsonFields maps the JSON names of t's fields, those of embedded
// structs included, to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			for k, v := range jsonFields(ft) {
				if _, shadowed := m[k]; !shadowed {
					m[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f
	}
	return m
}

// maxCheckDepth bounds how deep duplicateKeys looks: manifests are a
// few levels deep, and a hostile body must not buy work with nesting.
const maxCheckDepth = 64

// duplicateKeys reports keys that appear twice in one JSON object of b,
// down to maxCheckDepth. Paths are built only for what it reports.
func duplicateKeys(b []byte) FieldErrors {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	// frame is an open object or array; key and index say where in its
	// parent it sits, so that a path is made only when needed.
	type frame struct {
		parent   *frame
		object   bool
		keys     map[string]bool
		key      string // in the parent object
		index    int    // in the parent array
		items    int    // values seen so far, for an array
		wantKey  bool   // the next token of an object is a key
		nextKey  string // the key whose value comes next
		inObject bool   // the parent is an object
	}
	pathOf := func(f *frame, last string) string {
		var parts []string
		if last != "" {
			parts = append(parts, last)
		}
		for ; f != nil && f.parent != nil; f = f.parent {
			if f.inObject {
				parts = append(parts, "."+f.key)
			} else {
				parts = append(parts, fmt.Sprintf("[%d]", f.index))
			}
		}
		var sb strings.Builder
		for i := len(parts) - 1; i >= 0; i-- {
			sb.WriteString(parts[i])
		}
		return strings.TrimPrefix(sb.String(), ".")
	}
	var top *frame
	depth := 0
	var out FieldErrors
	for {
		tok, err := dec.Token()
		if err != nil {
			return out // the end, or malformed JSON that decoding reports
		}
		if top != nil && top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				top, depth = top.parent, depth-1
				continue
			}
			k, _ := tok.(string)
			if top.keys[k] && len(out) < 10 {
				out = append(out, FieldError{Field: pathOf(top, "."+k), Message: "appears twice: keep one (the last would silently win)"})
			}
			top.keys[k] = true
			top.nextKey, top.wantKey = k, false
			continue
		}
		// A value: of an object's key, an array's item, or the top.
		d, isDelim := tok.(json.Delim)
		if isDelim && d == ']' {
			top, depth = top.parent, depth-1
			continue
		}
		child := &frame{parent: top}
		if top != nil {
			if top.object {
				child.inObject, child.key = true, top.nextKey
				top.wantKey = true
			} else {
				child.index = top.items
				top.items++
			}
		}
		if !isDelim {
			continue
		}
		if depth >= maxCheckDepth {
			return out // deeper than any manifest: decoding judges the rest
		}
		child.object = d == '{'
		if child.object {
			child.keys, child.wantKey = map[string]bool{}, true
		}
		top, depth = child, depth+1
	}
}
