package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestAggregateAcrossStops(t *testing.T) {
	results := t.TempDir()
	for i, csv := range []string{
		"id,age,diagnosis\n1,40,flu\n2,60,copd\n3,x,flu\n",
		"id,age,diagnosis\n7,50,flu\n",
	} {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "patients.csv"), []byte(csv), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := run(data, results, []string{"a", "b"}[i]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(results, "aggregate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var agg Aggregate
	if err := json.Unmarshal(b, &agg); err != nil {
		t.Fatal(err)
	}
	if agg.Patients != 3 || agg.AgeSum != 150 || agg.RowsSkipped != 1 || agg.Diagnoses["flu"] != 2 || len(agg.Stations) != 2 {
		t.Fatalf("aggregate = %+v", agg)
	}
}

func TestGarbledPreviousResults(t *testing.T) {
	results := t.TempDir()
	os.WriteFile(filepath.Join(results, "aggregate.json"), []byte("{"), 0o600)
	if err := run(t.TempDir(), results, "a"); err == nil {
		t.Fatal("garbled previous results accepted")
	}
}
