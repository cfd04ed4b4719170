package v1

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxMillicores bounds a CPU quantity (a billion cores), as cores are
// bounded, so that sums and products of quantities cannot overflow.
const maxMillicores = 1e12

// CPU is an amount of processor time in millicores: 1000 is one core.
// It reads and writes as a string like "250m", "0.5" or "2".
type CPU int64

// ParseCPU parses "250m", "1.5" or "2" into millicores.
func ParseCPU(s string) (CPU, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty cpu quantity")
	}
	if m, ok := strings.CutSuffix(s, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("cpu %q: millicores must be a whole non-negative number, like 250m", s)
		}
		if n > maxMillicores {
			return 0, fmt.Errorf("cpu %q is too large (at most a billion cores)", s)
		}
		return CPU(n), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 1e9 {
		return 0, fmt.Errorf("cpu %q: want cores (0.5, 2) or millicores (500m)", s)
	}
	return CPU(math.Round(f * 1000)), nil
}

func (c CPU) String() string {
	if c%1000 == 0 {
		return strconv.FormatInt(int64(c)/1000, 10)
	}
	return strconv.FormatInt(int64(c), 10) + "m"
}

// MarshalJSON writes the quantity as a string.
func (c CPU) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON accepts a string ("250m") or a number of cores (0.25).
func (c *CPU) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] != '"' {
		s = string(b)
	} else if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseCPU(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Bytes is an amount of memory or storage in bytes. It reads and writes as
// a string with a binary (Ki, Mi, Gi, Ti) or decimal (k, M, G, T) suffix.
type Bytes int64

var byteSuffixes = []struct {
	s string
	m int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseBytes parses "128Mi", "1G", "512" into bytes.
func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty byte quantity")
	}
	mult := int64(1)
	num := s
	for _, suf := range byteSuffixes {
		if n, ok := strings.CutSuffix(s, suf.s); ok {
			num, mult = n, suf.m
			break
		}
	}
	num = strings.TrimSuffix(num, "B")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("quantity %q: want a number with an optional suffix Ki, Mi, Gi, Ti (or k, M, G, T), like 128Mi", s)
	}
	v := f * float64(mult)
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("quantity %q is too large", s)
	}
	return Bytes(math.Round(v)), nil
}

func (b Bytes) String() string {
	for _, suf := range []struct {
		s string
		m int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b != 0 && int64(b)%suf.m == 0 {
			return strconv.FormatInt(int64(b)/suf.m, 10) + suf.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalJSON writes the quantity as a string.
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON accepts a string ("128Mi") or a plain number of bytes.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if len(data) > 0 && data[0] != '"' {
		s = string(data)
	} else if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Duration is a time.Duration that reads and writes as "1.5s", "2m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a Go duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] != '"' {
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || f < 0 || f > 1e9 {
			return fmt.Errorf("duration %s: want a string like \"1s\" or a number of seconds", b)
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a value like 500ms, 1s, 2m", s)
	}
	*d = Duration(v)
	return nil
}

// IntOrPercent is a count ("2") or a share of a total ("25%").
type IntOrPercent struct {
	Value     int
	IsPercent bool
}

// Percent returns an IntOrPercent of p percent.
func Percent(p int) *IntOrPercent { return &IntOrPercent{Value: p, IsPercent: true} }

// Count returns an IntOrPercent holding the absolute number n.
func Count(n int) *IntOrPercent { return &IntOrPercent{Value: n} }

// Resolve turns the value into a count against total. Percentages round up
// when roundUp is set (as maxSurge does) and down otherwise (maxUnavailable).
func (v IntOrPercent) Resolve(total int, roundUp bool) int {
	if !v.IsPercent {
		return v.Value
	}
	n := v.Value * total
	if roundUp {
		return (n + 99) / 100
	}
	return n / 100
}

func (v IntOrPercent) String() string {
	if v.IsPercent {
		return strconv.Itoa(v.Value) + "%"
	}
	return strconv.Itoa(v.Value)
}

// MarshalJSON writes a percentage as a string and a count as a number.
func (v IntOrPercent) MarshalJSON() ([]byte, error) {
	if v.IsPercent {
		return json.Marshal(v.String())
	}
	return json.Marshal(v.Value)
}

// maxIntOrPercent bounds a count or percentage (a maxSurge): far above
// any replica count, and small enough that arithmetic on it is safe.
const maxIntOrPercent = 1000000

// UnmarshalJSON accepts 2, "2" or "25%".
func (v *IntOrPercent) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	p, isPct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > maxIntOrPercent {
		return fmt.Errorf("%s: want a non-negative count like 1 or a percentage like \"25%%\" (at most %d)", b, maxIntOrPercent)
	}
	*v = IntOrPercent{Value: n, IsPercent: isPct}
	return nil
}
