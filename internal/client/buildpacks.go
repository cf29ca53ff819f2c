package client

import (
	"context"
	"net/http"
)

// BuildpackInstallation is one of an app's buildpacks and its place.
type BuildpackInstallation struct {
	Ordinal   int `json:"ordinal"`
	Buildpack struct {
		URL  string `json:"url"`
		Name string `json:"name"`
	} `json:"buildpack"`
}

// Buildpacks lists an app's buildpacks in order.
func (c *Client) Buildpacks(ctx context.Context, app string) ([]BuildpackInstallation, error) {
	var out []BuildpackInstallation
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app)+"/buildpack-installations", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// SetBuildpacks replaces an app's buildpacks (URLs or built-in names, in
// order; none clears them) and returns the new list.
func (c *Client) SetBuildpacks(ctx context.Context, app string, buildpacks []string) ([]BuildpackInstallation, error) {
	type update struct {
		Buildpack string `json:"buildpack"`
	}
	body := struct {
		Updates []update `json:"updates"`
	}{Updates: []update{}}
	for _, b := range buildpacks {
		body.Updates = append(body.Updates, update{b})
	}
	var out []BuildpackInstallation
	if _, err := c.do(ctx, http.MethodPut, "/apps/"+esc(app)+"/buildpack-installations", body, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
