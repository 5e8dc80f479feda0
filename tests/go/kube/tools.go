//go:build tools

// The programs tests/apiserver builds; importing nothing keeps `go mod tidy` away: the
// requirement and its sums are kept by `go get` (see tests/apiserver).
package tools
