package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// meter measures what a work phase cost, per unit: this process's CPU
// time and allocations, and the whole machine's busy CPU time (Linux's
// /proc/stat: the PostgreSQL server's too). These move less than the
// rates with the load of a shared machine.
type meter struct {
	start      time.Time
	proc       time.Duration
	procOK     bool
	busy, idle int64
	machineOK  bool
	mallocs    uint64
}

func startMeter() *meter {
	m := &meter{}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs = ms.Mallocs
	m.busy, m.idle, m.machineOK = machineCPU()
	m.proc, m.procOK = processCPU()
	m.start = time.Now()
	return m
}

// stop fills in f's figures per unit.
func (m *meter) stop(f *Figure) {
	wall := time.Since(m.start)
	proc, procOK := processCPU()
	busy, idle, machineOK := machineCPU()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if f.Units <= 0 {
		return
	}
	units := float64(f.Units)
	f.AllocsPerUnit = float64(ms.Mallocs-m.mallocs) / units
	if procOK && m.procOK {
		f.ProcessCPUPerUnit = time.Duration(float64(proc-m.proc) / units)
	}
	if machineOK && m.machineOK && wall > 0 {
		b, i := busy-m.busy, idle-m.idle
		f.MachineCPUPerUnit = time.Duration(float64(b) * float64(time.Second) / float64(clockTicks) / units)
		if b+i > 0 {
			f.MachineBusy = float64(b) / float64(b+i)
		}
	}
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// machineCPU returns the machine's busy and idle CPU time so far, in clock
// ticks, from the first line of /proc/stat (busy: user, nice, system, irq
// and softirq; idle: idle and iowait). Steal time, when a virtual
// machine's hypervisor ran something else, is neither: no one here used
// it.
func machineCPU() (busy, idle int64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, false
	}
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(fields[i+1], 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return v[0] + v[1] + v[2] + v[5] + v[6], v[3] + v[4], true
}
