package v1

import "encoding/json"

func marshalForTest(o Object) ([]byte, error) { return json.Marshal(o) }
