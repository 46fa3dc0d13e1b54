//! One inotify instance for every followed file, waking the followers whose file changed.
