package seal

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// OpenTarget turns a target spec into a LegacyTarget:
//
//	registry://HOST[:PORT]  an OCI registry (images at HOST/<repo>:<tag>)
//	oci:DIR                 an OCI image layout directory
//	docker                  the Docker engine of DOCKER_HOST (Engine API)
//
// insecure allows plain HTTP to a non-loopback registry.
func OpenTarget(spec string, insecure bool, ropts ...remote.Option) (LegacyTarget, error) {
	switch {
	case strings.HasPrefix(spec, "registry://"):
		host := strings.TrimSuffix(strings.TrimPrefix(spec, "registry://"), "/")
		var nopts []name.Option
		if insecure {
			nopts = append(nopts, name.Insecure)
		}
		if _, err := name.NewRegistry(host, nopts...); err != nil || host == "" {
			return nil, fmt.Errorf("target %q: bad registry host", spec)
		}
		return NewRegistryTarget(host, nopts, ropts...), nil
	case strings.HasPrefix(spec, "oci:"):
		dir := strings.TrimPrefix(spec, "oci:")
		if dir == "" {
			return nil, fmt.Errorf("target %q: no directory", spec)
		}
		return NewLayoutTarget(dir), nil
	case spec == "docker":
		c, err := NewDockerClient()
		if err != nil {
			return nil, fmt.Errorf("docker engine: %w", err)
		}
		return NewDockerTarget(c), nil
	}
	return nil, fmt.Errorf("target %q: want registry://HOST, oci:DIR or docker", spec)
}

// LoadedRef returns where an archive image name ends up in a target, for
// messages.
func LoadedRef(t Target, imageName string) string {
	switch tt := t.(type) {
	case *RegistryTarget:
		return tt.Ref(imageName)
	case *LayoutTarget:
		return "oci:" + tt.dir + ":" + imageName
	case *DockerTarget:
		return dockerName(imageName)
	}
	return imageName
}
