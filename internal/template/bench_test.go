package template

import "testing"

func BenchmarkParseLarge(b *testing.B) {
	data := chain(MaxSteps)
	for b.Loop() {
		if _, err := Parse("big.yaml", data, ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
