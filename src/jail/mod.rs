//! Jails: count failures per host in a sliding `findtime` window and decide bans.
