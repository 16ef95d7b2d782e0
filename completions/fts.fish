# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fts_global_optspecs
    string join \n json q/quiet v/verbose no-progress fingerprint= password-file= admin-password-file= identity= name= timeout= h/help V/version
end

function __fish_fts_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fts_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fts_using_subcommand
    set -l cmd (__fish_fts_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fts -n "__fish_fts_needs_command" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_needs_command" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_needs_command" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_needs_command" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_needs_command" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_needs_command" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_needs_command" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_needs_command" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_needs_command" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_needs_command" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_needs_command" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_needs_command" -f -a "serve" -d 'Share a directory (or a single file) over TLS'
complete -c fts -n "__fish_fts_needs_command" -f -a "put" -d 'Upload files (and with -r, directories) to a server'
complete -c fts -n "__fish_fts_needs_command" -f -a "get" -d 'Download files (and with -r, directories) from a server'
complete -c fts -n "__fish_fts_needs_command" -f -a "ls" -d 'List files on a server'
complete -c fts -n "__fish_fts_needs_command" -f -a "rm" -d 'Remove files (and with -r, directories) on a server'
complete -c fts -n "__fish_fts_needs_command" -f -a "sync" -d 'Make DST a mirror of the contents of SRC (one side remote)'
complete -c fts -n "__fish_fts_needs_command" -f -a "stats" -d 'Show a server\'s status, lifetime totals and the clients connected now'
complete -c fts -n "__fish_fts_needs_command" -f -a "chat" -d 'Chat with the server\'s admins (or, with --admin, with its clients)'
complete -c fts -n "__fish_fts_needs_command" -f -a "admin" -d 'Manage a server\'s clients and read its log (needs the admin password)'
complete -c fts -n "__fish_fts_needs_command" -f -a "login" -d 'Store a server\'s password so later commands do not ask for it'
complete -c fts -n "__fish_fts_needs_command" -f -a "logout" -d 'Remove a server\'s stored passwords (access and admin)'
complete -c fts -n "__fish_fts_needs_command" -f -a "keygen" -d 'Create your client key, or show its fingerprint'
complete -c fts -n "__fish_fts_needs_command" -f -a "generate-docs"
complete -c fts -n "__fish_fts_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fts -n "__fish_fts_using_subcommand serve" -l node -d 'This server\'s name in stats and /metrics (the `node` label), to tell apart the servers of one bucket; default: the host name' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l s3-endpoint -d 'URL of an S3-compatible store other than AWS (Garage, MinIO, …), addressed path-style; `http://` is allowed for a local one' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l listen -d 'Address and port to listen on (port 0 picks a free port)' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l max-clients -d 'Most clients served at once; more get a "server full" error' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l authorized-keys -d 'Let fts clients log in with the keys listed in FILE, one per line: `SHA256:… NAME [admin] [read-only]` (the fingerprint `fts keygen` prints; `#` starts a comment). A key replaces the access password; `admin` also the admin password; `read-only` refuses its writes. Every fts client must then log in, with a key or (when there is one) the access password; the web side keeps passwords. FILE is read again whenever it changes, so a removed line is refused on that key\'s next connection; a FILE others may write is refused' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l cert -d 'PEM certificate chain to use instead of the self-signed one' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l key -d 'PEM private key for --cert' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l state-dir -d 'Where the server keeps its certificate, lifetime totals (totals.json) and event log (logs/events.jsonl, rotated at 10 MiB, 5 old files kept); default: the user\'s state dir. One server per state directory' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l compress-level -d 'zstd level for downloads (1 fast … 19 small)' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l shutdown-grace -d 'Seconds in-flight transfers may run on after SIGINT/SIGTERM' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l http-timeout -d 'Seconds a browser or HTTP tool may take to send a request\'s headers (and an idle keep-alive HTTP connection stays open). Slower requests are cut, so slow or silent connections cannot pile up' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand serve" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand serve" -l read-only -d 'Refuse uploads, directory changes and removals'
complete -c fts -n "__fish_fts_using_subcommand serve" -l no-compress -d 'Do not compress downloads on the wire'
complete -c fts -n "__fish_fts_using_subcommand serve" -l no-fsync -d 'Acknowledge uploads without first making them durable (no fsync): faster, but a power cut may lose files a client was told are stored'
complete -c fts -n "__fish_fts_using_subcommand serve" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand serve" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand serve" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand serve" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand serve" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand put" -l compress-level -d 'zstd level for data on the wire (1 fast … 19 small)' -r
complete -c fts -n "__fish_fts_using_subcommand put" -l retries -d 'After a lost connection or timeout, try again this many times (pausing 1 s, 2 s, 4 s … up to 30 s), resuming where it stopped' -r
complete -c fts -n "__fish_fts_using_subcommand put" -l bwlimit -d 'Limit socket I/O to RATE bytes per second in each direction (suffixes K, M, G for KiB, MiB, GiB: 500K, 10M); paced by sleeping, within 10% over any 5 s' -r
complete -c fts -n "__fish_fts_using_subcommand put" -l parallel -d 'Keep up to N files in flight at once, each on its own connection (like rclone\'s --transfers): faster over links with a long round trip, or when one connection cannot fill the link' -r
complete -c fts -n "__fish_fts_using_subcommand put" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand put" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand put" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand put" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand put" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand put" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand put" -s r -l recursive -d 'Copy directories recursively'
complete -c fts -n "__fish_fts_using_subcommand put" -l no-delta -d 'Always send whole files, never deltas against the receiver\'s copy'
complete -c fts -n "__fish_fts_using_subcommand put" -l no-compress -d 'Do not compress data on the wire'
complete -c fts -n "__fish_fts_using_subcommand put" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand put" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand put" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand put" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand put" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand put" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand get" -l compress-level -d 'zstd level for data on the wire (1 fast … 19 small)' -r
complete -c fts -n "__fish_fts_using_subcommand get" -l retries -d 'After a lost connection or timeout, try again this many times (pausing 1 s, 2 s, 4 s … up to 30 s), resuming where it stopped' -r
complete -c fts -n "__fish_fts_using_subcommand get" -l bwlimit -d 'Limit socket I/O to RATE bytes per second in each direction (suffixes K, M, G for KiB, MiB, GiB: 500K, 10M); paced by sleeping, within 10% over any 5 s' -r
complete -c fts -n "__fish_fts_using_subcommand get" -l parallel -d 'Keep up to N files in flight at once, each on its own connection (like rclone\'s --transfers): faster over links with a long round trip, or when one connection cannot fill the link' -r
complete -c fts -n "__fish_fts_using_subcommand get" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand get" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand get" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand get" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand get" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand get" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand get" -s r -l recursive -d 'Copy directories recursively'
complete -c fts -n "__fish_fts_using_subcommand get" -l no-fsync -d 'Report success without first making the downloaded files durable (no fsync): faster, but a power cut right after may lose them'
complete -c fts -n "__fish_fts_using_subcommand get" -l no-delta -d 'Always send whole files, never deltas against the receiver\'s copy'
complete -c fts -n "__fish_fts_using_subcommand get" -l no-compress -d 'Do not compress data on the wire'
complete -c fts -n "__fish_fts_using_subcommand get" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand get" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand get" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand get" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand get" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand ls" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand ls" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand ls" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand ls" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand ls" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand ls" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand ls" -s l -l long -d 'Long format: permissions, size, modification time'
complete -c fts -n "__fish_fts_using_subcommand ls" -s r -l recursive -d 'List subdirectories recursively'
complete -c fts -n "__fish_fts_using_subcommand ls" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand ls" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand ls" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand ls" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand ls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand ls" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand rm" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand rm" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand rm" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand rm" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand rm" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand rm" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand rm" -s r -l recursive -d 'Remove directories and their contents'
complete -c fts -n "__fish_fts_using_subcommand rm" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand rm" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand rm" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand rm" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand rm" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand rm" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand sync" -l exclude -d 'Leave matching paths alone (repeatable). A pattern without `/` matches a name at any depth (`*.log`), one with `/` the path from the top (`/build`, `docs/*.tmp`); excluded paths are not deleted either' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l compress-level -d 'zstd level for data on the wire (1 fast … 19 small)' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l retries -d 'After a lost connection or timeout, try again this many times (pausing 1 s, 2 s, 4 s … up to 30 s), resuming where it stopped' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l bwlimit -d 'Limit socket I/O to RATE bytes per second in each direction (suffixes K, M, G for KiB, MiB, GiB: 500K, 10M); paced by sleeping, within 10% over any 5 s' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l parallel -d 'Keep up to N files in flight at once, each on its own connection (like rclone\'s --transfers): faster over links with a long round trip, or when one connection cannot fill the link' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand sync" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand sync" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand sync" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand sync" -l delete -d 'Delete files in DST that are not in SRC'
complete -c fts -n "__fish_fts_using_subcommand sync" -s n -l dry-run -d 'Show what would be transferred or deleted; change nothing'
complete -c fts -n "__fish_fts_using_subcommand sync" -s c -l checksum -d 'Compare file contents (BLAKE3) instead of size and mtime'
complete -c fts -n "__fish_fts_using_subcommand sync" -l no-fsync -d 'When pulling, report success without first making the downloaded files durable (no fsync). A push is made durable by the server (see `fts serve --no-fsync`)'
complete -c fts -n "__fish_fts_using_subcommand sync" -l no-delta -d 'Always send whole files, never deltas against the receiver\'s copy'
complete -c fts -n "__fish_fts_using_subcommand sync" -l no-compress -d 'Do not compress data on the wire'
complete -c fts -n "__fish_fts_using_subcommand sync" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand sync" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand sync" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand sync" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand sync" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand stats" -l watch -d 'Refresh every SECS seconds until interrupted' -r
complete -c fts -n "__fish_fts_using_subcommand stats" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand stats" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand stats" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand stats" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand stats" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand stats" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand stats" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand stats" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand stats" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand stats" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand stats" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand chat" -s m -l message -d 'Send this one message and exit' -r
complete -c fts -n "__fish_fts_using_subcommand chat" -l to -d 'Admin: the client (id from `fts stats`, or name) to write to' -r
complete -c fts -n "__fish_fts_using_subcommand chat" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand chat" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand chat" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand chat" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand chat" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand chat" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand chat" -l admin -d 'Chat as the server\'s admin: see every client\'s messages (needs the admin password)'
complete -c fts -n "__fish_fts_using_subcommand chat" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand chat" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand chat" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand chat" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand chat" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand chat" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -s h -l help -d 'Print help'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -f -a "clients" -d 'The connected clients: id, name, address, state, file, progress, rate'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -f -a "kick" -d 'Disconnect a client. Its transfer stops at once, it is shown the reason and exits with code 10; an interrupted upload stays resumable'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -f -a "warn" -d 'Show a warning on one client\'s terminal (or every client\'s with --all) at once, even in the middle of a transfer'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -f -a "log" -d 'Export the server\'s event log (JSON Lines or CSV), oldest first'
complete -c fts -n "__fish_fts_using_subcommand admin; and not __fish_seen_subcommand_from clients kick warn log help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -s h -l help -d 'Print help'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from clients" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l reason -d 'Told to the client' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -s h -l help -d 'Print help'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from kick" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l all -d 'Warn every connected client (then give only TEXT)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -s h -l help -d 'Print help'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from warn" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l since -d 'Only events of the last DURATION (e.g. 90s, 15m, 2h, 7d)' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l category -d 'Only this category: server, connect, auth, transfer, delete, chat, admin or error' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l format -d 'Output format' -r -f -a "jsonl\t''
csv\t''"
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -s h -l help -d 'Print help'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from log" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "clients" -d 'The connected clients: id, name, address, state, file, progress, rate'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "kick" -d 'Disconnect a client. Its transfer stops at once, it is shown the reason and exits with code 10; an interrupted upload stays resumable'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "warn" -d 'Show a warning on one client\'s terminal (or every client\'s with --all) at once, even in the middle of a transfer'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "log" -d 'Export the server\'s event log (JSON Lines or CSV), oldest first'
complete -c fts -n "__fish_fts_using_subcommand admin; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fts -n "__fish_fts_using_subcommand login" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand login" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand login" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand login" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand login" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand login" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand login" -l admin -d 'Also check and store the admin password'
complete -c fts -n "__fish_fts_using_subcommand login" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand login" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand login" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand login" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand login" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand logout" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand logout" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand logout" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand logout" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand logout" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand logout" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand logout" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand logout" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand logout" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand logout" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand logout" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand logout" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand keygen" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand keygen" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand keygen" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand keygen" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand keygen" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand keygen" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand keygen" -l show -d 'Only show the fingerprint of the existing key (exit 3 without one)'
complete -c fts -n "__fish_fts_using_subcommand keygen" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand keygen" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand keygen" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand keygen" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fts -n "__fish_fts_using_subcommand keygen" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l fingerprint -d 'Accept only the server certificate with this fingerprint (SHA256:…), instead of known_hosts' -r
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l password-file -d 'Read the access password from this file (first line). For `serve`: the password clients must give. Overrides FTS_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l admin-password-file -d 'Read the admin password from this file (first line). For `serve`: enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD' -r -F
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l identity -d 'The key to offer to servers with authorized keys (default: identity.pem in the config directory, made by `fts keygen`). Overrides FTS_IDENTITY' -r -F
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l name -d 'Your name in the server\'s client table and in chat (default: user@hostname). A client that logs in with a key is shown by the key\'s name, with this one beside it' -r
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l timeout -d 'Give up when connecting, or when nothing has arrived from the peer for this long (a slow transfer that keeps moving never times out; both sides send keepalives while busy). `serve` waits twice as long' -r
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l json -d 'Print exactly one JSON document on stdout (JSON Lines for streams); errors go to stderr as {"error":{…}}'
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -s q -l quiet -d 'Print nothing but errors'
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -s v -l verbose -d 'Say more (repeatable)'
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -l no-progress -d 'Never draw progress bars (they are drawn only when stderr is a terminal)'
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -s h -l help -d 'Print help'
complete -c fts -n "__fish_fts_using_subcommand generate-docs" -s V -l version -d 'Print version'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "serve" -d 'Share a directory (or a single file) over TLS'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "put" -d 'Upload files (and with -r, directories) to a server'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "get" -d 'Download files (and with -r, directories) from a server'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "ls" -d 'List files on a server'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "rm" -d 'Remove files (and with -r, directories) on a server'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "sync" -d 'Make DST a mirror of the contents of SRC (one side remote)'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "stats" -d 'Show a server\'s status, lifetime totals and the clients connected now'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "chat" -d 'Chat with the server\'s admins (or, with --admin, with its clients)'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "admin" -d 'Manage a server\'s clients and read its log (needs the admin password)'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "login" -d 'Store a server\'s password so later commands do not ask for it'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "logout" -d 'Remove a server\'s stored passwords (access and admin)'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "keygen" -d 'Create your client key, or show its fingerprint'
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "generate-docs"
complete -c fts -n "__fish_fts_using_subcommand help; and not __fish_seen_subcommand_from serve put get ls rm sync stats chat admin login logout keygen generate-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fts -n "__fish_fts_using_subcommand help; and __fish_seen_subcommand_from admin" -f -a "clients" -d 'The connected clients: id, name, address, state, file, progress, rate'
complete -c fts -n "__fish_fts_using_subcommand help; and __fish_seen_subcommand_from admin" -f -a "kick" -d 'Disconnect a client. Its transfer stops at once, it is shown the reason and exits with code 10; an interrupted upload stays resumable'
complete -c fts -n "__fish_fts_using_subcommand help; and __fish_seen_subcommand_from admin" -f -a "warn" -d 'Show a warning on one client\'s terminal (or every client\'s with --all) at once, even in the middle of a transfer'
complete -c fts -n "__fish_fts_using_subcommand help; and __fish_seen_subcommand_from admin" -f -a "log" -d 'Export the server\'s event log (JSON Lines or CSV), oldest first'
