package scrape

import "unsafe"

// unsafeData is the address of s's bytes: equal for shared strings.
func unsafeData(s string) *byte { return unsafe.StringData(s) }
