package apps

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// cloneApp copies a deeply, maps and slices included.
func cloneApp(a *v1.App) (*v1.App, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("copy app %q: %w", a.Metadata.Name, err)
	}
	var c v1.App
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copy app %q: %w", a.Metadata.Name, err)
	}
	return &c, nil
}
