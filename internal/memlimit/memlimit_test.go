package memlimit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree writes a /proc/self and cgroup file system under a temp dir.
// mountinfo uses the placeholder ROOT for the temp dir.
func fakeTree(t *testing.T, cgroup, mountinfo string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/cgroup", cgroup)
	write("proc/mountinfo", strings.ReplaceAll(mountinfo, "ROOT", dir))
	for name, content := range files {
		write(name, content)
	}
	return filepath.Join(dir, "proc")
}

const (
	v2Mount = "30 23 0:26 / ROOT/sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	v1Mount = "31 23 0:28 / ROOT/sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)

func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cgroup    string
		mountinfo string
		files     map[string]string
		want      int64
	}{
		{"v2 limit", "0::/kubepods/pod1/c1\n", v2Mount,
			map[string]string{"sys/fs/cgroup/kubepods/pod1/c1/memory.max": "268435456\n"}, 256 << 20},
		{"v2 max is no limit", "0::/c1\n", v2Mount,
			map[string]string{"sys/fs/cgroup/c1/memory.max": "max\n"}, 0},
		{"v2 parent limit binds", "0::/pod/c1\n", v2Mount,
			map[string]string{"sys/fs/cgroup/pod/c1/memory.max": "max\n", "sys/fs/cgroup/pod/memory.max": "104857600\n"}, 100 << 20},
		{"v2 smallest along the path", "0::/pod/c1\n", v2Mount,
			map[string]string{"sys/fs/cgroup/pod/c1/memory.max": "52428800\n", "sys/fs/cgroup/pod/memory.max": "104857600\n"}, 50 << 20},
		{"v2 inside a cgroup namespace", "0::/\n", v2Mount,
			map[string]string{"sys/fs/cgroup/memory.max": "134217728\n"}, 128 << 20},
		{"v1 limit", "4:memory:/docker/abc\n0::/\n", v1Mount,
			map[string]string{"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "209715200\n"}, 200 << 20},
		{"v1 unlimited", "4:memory:/docker/abc\n", v1Mount,
			map[string]string{"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"v1 mount of a subtree", "4:memory:/docker/abc\n",
			"31 23 0:28 /docker/abc ROOT/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
			map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "314572800\n"}, 300 << 20},
		{"hybrid: v1 memory, empty v2", "4:memory:/m\n0::/\n", v2Mount + v1Mount,
			map[string]string{"sys/fs/cgroup/memory/m/memory.limit_in_bytes": "104857600\n"}, 100 << 20},
		{"no memory controller", "1:cpu:/\n", "", nil, 0},
		{"path escaping the mount stays inside", "0::/../../etc\n", v2Mount,
			map[string]string{"sys/fs/cgroup/memory.max": "max\n"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := fakeTree(t, tc.cgroup, tc.mountinfo, tc.files)
			got, err := CgroupLimit(proc)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCgroupLimitRejectsGarbage(t *testing.T) {
	proc := fakeTree(t, "0::/c\n", v2Mount, map[string]string{"sys/fs/cgroup/c/memory.max": "lots\n"})
	if _, err := CgroupLimit(proc); err == nil {
		t.Fatal("a memory.max that is not a number must be an error")
	}
}

func TestApply(t *testing.T) {
	proc := fakeTree(t, "0::/c\n", v2Mount, map[string]string{"sys/fs/cgroup/c/memory.max": "1000000000\n"})
	for _, tc := range []struct {
		name  string
		env   string
		ratio float64
		want  int64
	}{
		{"90 % of the cgroup limit", "", 0, 900_000_000},
		{"ratio", "", 0.5, 500_000_000},
		{"GOMEMLIMIT wins", "200MiB", 0, 0},
		{"GOMEMLIMIT=off wins too", "off", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var set int64 = -1
			got, err := Apply(Options{
				Ratio:          tc.ratio,
				ProcSelf:       proc,
				Getenv:         func(k string) string { return map[string]string{"GOMEMLIMIT": tc.env}[k] },
				SetMemoryLimit: func(n int64) int64 { set = n; return 0 },
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Apply = %d, want %d", got, tc.want)
			}
			if tc.want == 0 && set != -1 {
				t.Fatalf("limit %d set although GOMEMLIMIT is given", set)
			}
			if tc.want != 0 && set != tc.want {
				t.Fatalf("runtime limit %d, want %d", set, tc.want)
			}
		})
	}
}
