// yaml2json prints every YAML document of the named files (or of stdin) as one line of JSON.
//
// It exists so the chart check's Python stays standard-library only: PyYAML is not in the e2e venv.
// Documents are split like kubectl and Helm split them (a line "---", optionally followed by a
// comment), converted with sigs.k8s.io/yaml (the library Helm uses), strictly: a duplicate key is
// an error. Documents that are empty or only comments are skipped.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

// documents splits a YAML stream at "---" separator lines.
func documents(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("---")); ok {
			rest = bytes.TrimSpace(rest)
			if len(rest) == 0 || rest[0] == '#' {
				docs = append(docs, bytes.Clone(cur.Bytes()))
				cur.Reset()
				continue
			}
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

func convert(name string, data []byte, out io.Writer) error {
	for i, doc := range documents(data) {
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		if _, err := fmt.Fprintf(out, "%s\n", j); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	names := os.Args[1:]
	if len(names) == 0 {
		names = []string{"-"}
	}
	for _, name := range names {
		var data []byte
		var err error
		if name == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(name)
		}
		if err == nil {
			err = convert(name, data, out)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "yaml2json: %v\n", err)
			os.Exit(1)
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "yaml2json: %v\n", err)
		os.Exit(1)
	}
}
