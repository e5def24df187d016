package cli

// examples holds the Example sections of commands that are built by shared
// helpers (one cobra.Command literal serves several commands, so the text
// cannot sit in the literal) or that live in files whose owners keep their
// constructors compact; keyed by the command path without "trainyard ".
// Every line must run as written once the placeholders (hosts, ids, files)
// are the user's; TestExamplesUseRealCommands checks commands and flags.
var examples = map[string]string{
	// trust
	"trust init": `  export TRAINYARD_TRUST_REPO=127.0.0.1:5000/net/trust
  trainyard trust init
  trainyard trust init --approval-threshold 2`,
	"trust add-station": `  trainyard keys generate hospital-a && trainyard trust add-station hospital-a --key hospital-a.pub
  trainyard trust add-station hospital-a --key hospital-a-2027.pub --replace`,
	"trust add-user": `  trainyard keys generate alice && trainyard trust add-user alice --key alice.pub
  trainyard trust add-user alice --key alice-new.pub --replace`,
	"trust remove-station": `  trainyard trust remove-station lab-c`,
	"trust remove-user":    `  trainyard trust remove-user bob`,
	"trust approve-train": `  trainyard trust approve-train --code ./code --entrypoint /opt/pht_train/aggregate --user board --key board.key
  trainyard trust approve-train --digest sha256:5d1e... --user board --key board.key --label "study 42" --expires 180d --out approval.json`,
	"trust add-approval":           `  trainyard trust add-approval approval-board.json approval-ethics.json`,
	"trust revoke-approval":        `  trainyard trust revoke-approval sha256:5d1e...`,
	"trust set-approval-threshold": `  trainyard trust set-approval-threshold 2`,
	"trust refresh": `  trainyard trust refresh
  trainyard trust refresh --watch --interval 30m`,
	"trust pull": `  trainyard trust pull
  trainyard trust pull --trust-root root.json`,
	"trust show": `  trainyard trust show --trust-root root.json
  trainyard trust show -o json | jq -r '.stations[]'`,

	// station
	"station run": `  trainyard station run 127.0.0.1:5000/net/stations/hospital-a:study42 --id hospital-a --key hospital-a.key --data ./data --network 127.0.0.1:5000/net
  TRAINYARD_STATION_ID=hospital-a TRAINYARD_STATION_KEY=hospital-a.key TRAINYARD_STATION_DATA=./data TRAINYARD_NETWORK=127.0.0.1:5000/net \
    trainyard station run 127.0.0.1:5000/net/stations/hospital-a:study42 --memory 1Gi --timeout 30m`,
	"station serve": `  trainyard station serve --id hospital-a --key hospital-a.key --data ./data --network 127.0.0.1:5000/net
  trainyard station serve --id hospital-a --key hospital-a.key --data ./data --network 127.0.0.1:5000/net --hold --review-results
  trainyard station serve --id hospital-a --key hospital-a.key --data ./data --network 127.0.0.1:5000/net --interval 30s --status-addr 127.0.0.1:9090`,
	"station logs": `  trainyard station logs --id hospital-a
  trainyard station logs study42 --id hospital-a`,
	"station accept":   `  trainyard station accept study42 --id hospital-a`,
	"station reject":   `  trainyard station reject study42 --id hospital-a --reason "not covered by our data agreement"`,
	"station release":  `  trainyard station release study42 --id hospital-a`,
	"station withhold": `  trainyard station withhold study42 --id hospital-a --reason "counts below 10 would identify patients"`,
	"station retry":    `  trainyard station retry study42 --id hospital-a`,
	"station history": `  trainyard station history --id hospital-a
  trainyard station history --id hospital-a --state failed,refused -o json`,
	"station stop":    `  trainyard station stop study42 --id hospital-a`,
	"station results": `  trainyard station results study42 --id hospital-a`,
	"station status":  `  trainyard station status --id hospital-a -o json`,
	"station backup":  `  trainyard station backup --id hospital-a /var/backups/trainyard-station-hospital-a.db`,

	// sealed archives and the key server
	"seal": `  trainyard seal --images 127.0.0.1:5000/azaion/annotations:3.1 --out site.sealed --devices site-a
  trainyard seal --images oci:./annotations:3.1,docker-archive:images.tar:azaion/flights:2,maps.tar --out site.sealed
  trainyard seal --images ghcr.io/azaion/app:1.0 --platform linux/arm64 --out site.sealed --keyserver-data ./ks`,
	"seal inspect": `  trainyard seal inspect site.sealed
  trainyard seal inspect site.sealed | jq -r '.images[].name'`,
	"unseal": `  TRAINYARD_KEYSERVER_TOKEN=tyks_... trainyard unseal site.sealed --keyserver https://keys.example.org:8443 \
    --device-key site-a.device-key.json --to registry://127.0.0.1:5000 --expect azaion/annotations:3.1
  trainyard unseal site.sealed --fragment-file site-a.fragment --device-key site-a.device-key.json --to oci:./images`,
	"keyserver serve": `  trainyard keyserver serve --data ./ks
  trainyard keyserver serve --data ./ks --addr 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem`,
	"keyserver token create": `  trainyard keyserver token create --data ./ks --device site-a
  trainyard keyserver token create --data ./ks --device site-a --archive ar-2026-11 --ttl 720h --name "site A laptop"`,
	"keyserver token list":   `  trainyard keyserver token list --data ./ks`,
	"keyserver token revoke": `  trainyard keyserver token revoke --data ./ks 3f9a1c`,
	"keyserver fragment add": `  trainyard keyserver fragment add --data ./ks --archive ar-2026-11 --device site-a --file site-a.fragment && rm site-a.fragment`,
	"keyserver fragment list": `  trainyard keyserver fragment list --data ./ks
  trainyard keyserver fragment list --data ./ks --archive ar-2026-11`,
	"keyserver fragment revoke": `  trainyard keyserver fragment revoke --data ./ks --archive ar-2026-11 --device site-a`,
	"keyserver audit": `  trainyard keyserver audit --data ./ks -n 20
  trainyard keyserver audit --data ./ks --refusals`,

	// TUF over OCI: publisher
	"tuf create-root-key": `  trainyard tuf create-root-key 127.0.0.1:5000/dist/tools
  trainyard tuf create-root-key 127.0.0.1:5000/dist/tools --add`,
	"tuf create-metadata-keys": `  trainyard tuf create-metadata-keys 127.0.0.1:5000/dist/tools
  trainyard tuf create-metadata-keys 127.0.0.1:5000/dist/tools releases`,
	"tuf create-metadata": `  trainyard tuf create-metadata 127.0.0.1:5000/dist/tools
  trainyard tuf create-metadata 127.0.0.1:5000/dist/tools --threshold root=2`,
	"tuf reset-keys": `  trainyard tuf create-root-key 127.0.0.1:5000/dist/tools && trainyard tuf reset-keys 127.0.0.1:5000/dist/tools`,
	"tuf push-target": `  trainyard tuf push-target 127.0.0.1:5000/dist/tools hello.txt ./hello.txt
  trainyard tuf push-target 127.0.0.1:5000/dist/tools releases/app-1.1.tar ./part1 ./part2 --role releases`,
	"tuf add-delegation":    `  trainyard tuf add-delegation 127.0.0.1:5000/dist/tools releases --path 'releases/*' --threshold 1`,
	"tuf del-target":        `  trainyard tuf del-target 127.0.0.1:5000/dist/tools hello.txt`,
	"tuf push-metadata":     `  trainyard tuf push-metadata 127.0.0.1:5000/dist/tools`,
	"tuf refresh-timestamp": `  trainyard tuf refresh-timestamp 127.0.0.1:5000/dist/tools   # hourly from cron`,
	"tuf pull-master": `  trainyard tuf pull-master 127.0.0.1:5000/dist/tools
  trainyard tuf pull-master 127.0.0.1:5000/dist/tools root.json`,
	"tuf list-master-targets":    `  trainyard tuf list-master-targets 127.0.0.1:5000/dist/tools`,
	"tuf get-master-expirations": `  trainyard tuf get-master-expirations 127.0.0.1:5000/dist/tools`,

	// TUF over OCI: client
	"tuf pull-metadata": `  trainyard tuf pull-metadata 127.0.0.1:5000/dist/tools root.json
  trainyard tuf pull-metadata 127.0.0.1:5000/dist/tools`,
	"tuf pull-target": `  trainyard tuf pull-target 127.0.0.1:5000/dist/tools hello.txt -o hello.txt
  trainyard tuf pull-target 127.0.0.1:5000/dist/tools hello.txt | sha256sum`,
	"tuf blob-sizes":           `  trainyard tuf blob-sizes 127.0.0.1:5000/dist/tools releases/app-1.1.tar`,
	"tuf check-target":         `  trainyard tuf check-target 127.0.0.1:5000/dist/tools hello.txt ./hello.txt`,
	"tuf list-copy-targets":    `  trainyard tuf list-copy-targets 127.0.0.1:5000/dist/tools`,
	"tuf get-copy-expirations": `  trainyard tuf get-copy-expirations 127.0.0.1:5000/dist/tools`,
	"tuf list-repos":           `  trainyard tuf list-repos 127.0.0.1:5000`,
	"tuf auth":                 `  trainyard tuf auth ghcr.io/acme/tools pull`,
	"tuf client init":          `  trainyard tuf client --metadata-dir ./meta init root.json`,
	"tuf client refresh":       `  trainyard tuf client --metadata-dir ./meta --metadata-url http://127.0.0.1:8080/metadata refresh`,
	"tuf client download": `  trainyard tuf client --metadata-dir ./meta --metadata-url http://127.0.0.1:8080/metadata \
    --target-base-url http://127.0.0.1:8080/targets --target-dir ./out --target-name hello.txt download`,
}
