package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
		return nil
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
		for key, v := range obj {
			if f, ok := fields[key]; ok {
				out = append(out, fieldProblems(f.Type, v, join(key))...)
				continue
			}
			for name := range fields {
				if strings.EqualFold(name, key) {
					out = append(out, FieldError{Field: join(key), Message: fmt.Sprintf("unknown field: did you mean %q? Field names are case-sensitive", name)})
					break
				}
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
		for key, v := range obj {
			out = append(out, fieldProblems(t.Elem(), v, join(key))...)
		}
	}
	return out
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

// duplicateKeys reports keys that appear twice in one JSON object of b.
func duplicateKeys(b []byte) FieldErrors {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		path   string
		index  int
		key    bool // the next token of an object is a key
	}
	var stack []*frame
	var out FieldErrors
	childPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if !top.object {
			p := fmt.Sprintf("%s[%d]", top.path, top.index)
			top.index++
			return p
		}
		return top.path
	}
	var pendingKey string
	for {
		tok, err := dec.Token()
		if err != nil {
			return out // the end, or malformed JSON that decoding reports
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			p := k
			if top.path != "" {
				p = top.path + "." + k
			}
			if top.keys[k] {
				out = append(out, FieldError{Field: p, Message: "appears twice: keep one (the last would silently win)"})
			}
			top.keys[k] = true
			pendingKey, top.key = p, false
			continue
		}
		// A value: of an object's key, an array's item, or the top.
		var p string
		if top != nil && top.object {
			p, top.key = pendingKey, true
		} else {
			p = childPath()
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, path: p, key: true})
			case '[':
				stack = append(stack, &frame{path: p})
			case ']':
				stack = stack[:len(stack)-1]
			}
		}
	}
}
