package v1

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// yamlBlock is a fenced yaml block of a Markdown file.
var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// Every YAML example in the README and docs/ that is a whole manifest
// (it names its kind) decodes and validates as the docs show it.
func TestDocsManifestExamplesDecode(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllSubmatchIndex(b, -1) {
			doc := string(b[m[2]:m[3]])
			if !regexp.MustCompile(`(?m)^kind: `).MatchString(doc) {
				continue // a fragment of one
			}
			line := 1 + strings.Count(string(b[:m[0]]), "\n")
			n++
			t.Run(filepath.Base(f)+":"+itoa(line), func(t *testing.T) {
				objs, err := DecodeManifests(strings.NewReader(doc))
				if err != nil {
					t.Fatalf("the example does not decode: %v\n%s", err, doc)
				}
				if len(objs) == 0 {
					t.Fatalf("no objects in\n%s", doc)
				}
			})
		}
	}
	if n < 5 {
		t.Fatalf("found only %d manifest examples in the docs: is the pattern still right?", n)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
