// Command aggregate is the demo's train: at every station it reads the
// station's CSV files (columns: id, age, diagnosis) from the read-only data
// directory and folds counts and sums into /opt/pht_results/aggregate.json,
// which the previous stations' results already hold. No row leaves the
// station; only the running totals travel on.
package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// Aggregate is the running result the train carries from stop to stop.
type Aggregate struct {
	Stations    []string       `json:"stations"`
	Patients    int            `json:"patients"`
	AgeSum      int            `json:"age_sum"`
	MeanAge     float64        `json:"mean_age"`
	Diagnoses   map[string]int `json:"diagnoses"`
	RowsSkipped int            `json:"rows_skipped"`
}

func main() {
	data := env("PHT_DATA_DIR", "/opt/pht_data")
	results := env("PHT_RESULTS_DIR", "/opt/pht_results")
	if err := run(data, results, env("PHT_STATION_ID", "unknown")); err != nil {
		fmt.Fprintln(os.Stderr, "aggregate:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(dataDir, resultsDir, station string) error {
	out := filepath.Join(resultsDir, "aggregate.json")
	agg := Aggregate{Diagnoses: map[string]int{}}
	if b, err := os.ReadFile(out); err == nil {
		if err := json.Unmarshal(b, &agg); err != nil {
			return fmt.Errorf("previous results: %w", err)
		}
		if agg.Diagnoses == nil {
			agg.Diagnoses = map[string]int{}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dataDir, "*.csv"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if err := addFile(&agg, f); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
	}
	agg.Stations = append(agg.Stations, station)
	if agg.Patients > 0 {
		agg.MeanAge = float64(agg.AgeSum) / float64(agg.Patients)
	}
	b, err := json.MarshalIndent(agg, "", "  ")
	if err != nil {
		return err
	}
	fmt.Printf("station %s: %d patients so far, mean age %.1f\n", station, agg.Patients, agg.MeanAge)
	return os.WriteFile(out, append(b, '\n'), 0o644)
}

func addFile(agg *Aggregate, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header := true
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if header {
			header = false
			continue
		}
		if len(rec) < 3 {
			agg.RowsSkipped++
			continue
		}
		age, err := strconv.Atoi(rec[1])
		if err != nil || age < 0 || age > 150 {
			agg.RowsSkipped++
			continue
		}
		agg.Patients++
		agg.AgeSum += age
		agg.Diagnoses[rec[2]]++
	}
}
