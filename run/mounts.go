package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// setupMounts makes the agent's view of the filesystem: generated files
// bound over their targets, masked paths hidden. Mounts made in a mount
// namespace owned by an unprivileged user namespace are locked together and
// cannot be undone by the agent, which has no capabilities at all.
func setupMounts(s *Spec) error {
	// Nothing we mount may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for _, b := range s.Binds {
		if err := bindFile(b); err != nil {
			return err
		}
	}
	// Open what stays exposed before masks hide the paths: the bind source
	// is then the open directory, not a path that no longer resolves.
	exposed := map[string]*os.File{}
	for _, p := range s.Expose {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("expose %s: %w", p, err)
		}
		defer f.Close()
		exposed[p] = f
	}
	for _, p := range s.Masks {
		if err := mask(p, exposed); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// bindFile binds b.Source over b.Target read-only. A symlinked target (a
// resolv.conf pointing at systemd's stub file) is followed by the mount; a
// dangling one gets its link target created on a fresh tmpfs.
func bindFile(b Bind) error {
	target := b.Target
	if _, err := os.Stat(target); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bind %s: %w", target, err)
		}
		link, lerr := filepath.EvalSymlinks(filepath.Dir(target))
		dest, rerr := os.Readlink(target)
		if lerr != nil || rerr != nil {
			if b.Optional {
				return nil
			}
			return fmt.Errorf("bind %s: %w", target, err)
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(link, dest)
		}
		if err := tmpfsWithFile(dest); err != nil {
			return fmt.Errorf("bind %s (dangling link to %s): %w", target, dest, err)
		}
		target = dest
	}
	if err := unix.Mount(b.Source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", target, err)
	}
	return remountReadOnly(target)
}

// tmpfsWithFile mounts a tmpfs on path's directory (which must exist) and
// creates path in it, for binding over.
func tmpfsWithFile(path string) error {
	dir := filepath.Dir(path)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k"); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// remountReadOnly makes a bind mount read-only. A remount in a user
// namespace must keep the flags the mount was locked with (nosuid, nodev,
// noexec, atime), or the kernel refuses it with EPERM.
func remountReadOnly(target string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", target, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", target, err)
	}
	return nil
}

// mask hides path: an empty read-only tmpfs over a directory, an empty
// read-only file over anything else (files, sockets). A path that does not
// exist needs no mask. Exposed directories under a masked one are bound
// back, read-only, from their open handles.
func mask(path string, exposed map[string]*os.File) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		// Nothing to hide, or nothing the agent — the same uid as we, with
		// no capabilities — could reach either.
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
		if err := unix.Mount("tmpfs", path, "tmpfs", flags, "mode=0755,size=64k"); err != nil {
			return err
		}
		for p, f := range exposed {
			rel, err := filepath.Rel(path, p)
			if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
				continue
			}
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("expose %s: %w", p, err)
			}
			if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), p, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("expose %s: %w", p, err)
			}
			if err := remountReadOnly(p); err != nil {
				return err
			}
		}
		return unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, "mode=0555,size=64k")
	}
	if err := unix.Mount("/dev/null", path, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return remountReadOnly(path)
}
