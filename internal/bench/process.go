package bench

import (
	"runtime"
	"time"
)

// Process is what this process spent on the work phase of a burn-down,
// diamond or fanout scenario, per task: CPU time (every goroutine of the
// process: the engine's, the store's and, on SQLite, the database's own;
// not a PostgreSQL server's) and the Go heap's allocations. Unlike
// throughput, these hardly move with the load of a shared machine, so
// they compare builds where rates are noisy.
type Process struct {
	// CPUPerTask is UserPerTask plus SystemPerTask; all three are 0 where
	// the system does not report CPU time.
	CPUPerTask    time.Duration `json:"cpu_per_task_ns"`
	UserPerTask   time.Duration `json:"user_per_task_ns"`
	SystemPerTask time.Duration `json:"system_per_task_ns"`
	// Cores is the CPU time over the phase's wall time: how many cores
	// the process kept busy on average.
	Cores float64 `json:"cores"`
	// AllocsPerTask and BytesPerTask are the heap allocations and the
	// bytes allocated per task; GCCycles the collections in the phase.
	AllocsPerTask float64 `json:"allocs_per_task"`
	BytesPerTask  float64 `json:"bytes_per_task"`
	GCCycles      uint32  `json:"gc_cycles"`
}

// processMeter measures a phase for Process.
type processMeter struct {
	start        time.Time
	user, system time.Duration
	cpuOK        bool
	mem          runtime.MemStats
}

func startProcessMeter() *processMeter {
	m := &processMeter{}
	runtime.ReadMemStats(&m.mem)
	m.user, m.system, m.cpuOK = processCPU()
	m.start = time.Now()
	return m
}

// stop ends the phase and returns its figures per task, for n tasks.
func (m *processMeter) stop(n int) *Process {
	wall := time.Since(m.start)
	user, system, ok := processCPU()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	if n <= 0 {
		return nil
	}
	p := &Process{
		AllocsPerTask: float64(mem.Mallocs-m.mem.Mallocs) / float64(n),
		BytesPerTask:  float64(mem.TotalAlloc-m.mem.TotalAlloc) / float64(n),
		GCCycles:      mem.NumGC - m.mem.NumGC,
	}
	if ok && m.cpuOK {
		u, s := user-m.user, system-m.system
		p.UserPerTask, p.SystemPerTask = u/time.Duration(n), s/time.Duration(n)
		p.CPUPerTask = p.UserPerTask + p.SystemPerTask
		if wall > 0 {
			p.Cores = float64(u+s) / float64(wall)
		}
	}
	return p
}
