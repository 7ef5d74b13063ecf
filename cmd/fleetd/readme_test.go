package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink matches the target of a Markdown link or image: ](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Every relative link in the README and docs/ resolves to a file of the
// repository, so a fresh clone (with nothing beside it) has everything the
// README points at.
func TestDocLinksResolveInsideTheRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	links := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			links++
			if err := checkLink(root, f, target); err != nil {
				t.Errorf("%s: link %s %v", rel, m[1], err)
			}
		}
	}
	if links < 10 {
		t.Fatalf("only %d relative links found; the link pattern is not matching", links)
	}
}

// checkLink resolves a relative link of the file at from against the
// repository at root.
func checkLink(root, from, target string) error {
	target, _, _ = strings.Cut(target, "#")
	abs := filepath.Join(filepath.Dir(from), filepath.FromSlash(target))
	if r, err := filepath.Rel(root, abs); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return errors.New("leaves the repository")
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("does not resolve: %w", err)
	}
	return nil
}

func TestCheckLinkRefusesLinksOutOfTheRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme := filepath.Join(root, "README.md")
	for target, ok := range map[string]bool{
		"docs/operations.md":                          true,
		"docs/operations.md#reload":                   true,
		"dashboards":                                  true,
		"../shared/api/bikeep-parking-device-api.txt": false,
		"docs/../../shared/DESIGN.md":                 false,
		"docs/no-such-file.md":                        false,
	} {
		if err := checkLink(root, readme, target); (err == nil) != ok {
			t.Errorf("checkLink(%q) = %v, want ok=%v", target, err, ok)
		}
	}
}
