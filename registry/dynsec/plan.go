package dynsec

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/drover-iot/drover/registry"
)

// ClientState is a client as dynsec reports it (getClient, listClients).
type ClientState struct {
	Username        string    `json:"username"`
	ClientID        string    `json:"clientid"`
	TextName        string    `json:"textname"`
	TextDescription string    `json:"textdescription"`
	Disabled        bool      `json:"disabled"`
	Roles           []roleRef `json:"roles"`
}

// RoleState is a role as dynsec reports it (getRole, listRoles).
type RoleState struct {
	Rolename string `json:"rolename"`
	ACLs     []ACL  `json:"acls"`
}

// decodeClient returns the client of a getClient response, nil when it
// does not exist.
func decodeClient(r Response) (*ClientState, error) {
	if err := r.Err(); err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	var v struct {
		Client *ClientState `json:"client"`
	}
	if err := json.Unmarshal(r.Data, &v); err != nil {
		return nil, fmt.Errorf("dynsec getClient: %w", err)
	}
	return v.Client, nil
}

// decodeRole returns the role of a getRole response, nil when it does not
// exist.
func decodeRole(r Response) (*RoleState, error) {
	if err := r.Err(); err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	var v struct {
		Role *RoleState `json:"role"`
	}
	if err := json.Unmarshal(r.Data, &v); err != nil {
		return nil, fmt.Errorf("dynsec getRole: %w", err)
	}
	return v.Role, nil
}

// plan returns the commands that bring the client cur and the role of key
// in step with device d (nil: not in the registry), setting the password to
// secret when it is not empty. It records whether the device is left
// waiting for its password.
func (s *Sync) plan(key string, d *registry.Device, cur *ClientState, role *RoleState, secret string) []Command {
	if d == nil || d.Status == registry.StatusRevoked {
		s.setPending(key, false)
		var cmds []Command
		if cur != nil {
			cmds = append(cmds, Command{"command": "deleteClient", "username": key}) // disconnects it
		}
		if role != nil {
			cmds = append(cmds, Command{"command": "deleteRole", "rolename": RoleName(key)})
		}
		return cmds
	}
	rolename := RoleName(key)
	cmds := planRole(rolename, RoleACLs(registry.DeviceACL(d), false), role)
	marker := Marker(d)
	var have string
	var enabled bool
	if cur == nil {
		c := Command{"command": "createClient", "username": key, "clientid": key, "textname": DeviceTextName,
			"textdescription": MarkerPending, "roles": []roleRef{{rolename}}}
		switch {
		case secret != "":
			c["password"], c["textdescription"] = secret, marker
		case d.Secret == nil:
			c["textdescription"] = marker // certificate only: no password to wait for
		}
		have, _ = c["textdescription"].(string)
		cmds = append(cmds, c)
		enabled = true
	} else {
		cmds = append(cmds, planClient(key, rolename, cur)...)
		have, enabled = cur.TextDescription, !cur.Disabled
		if secret != "" {
			cmds = append(cmds,
				Command{"command": "setClientPassword", "username": key, "password": secret},
				Command{"command": "modifyClient", "username": key, "textdescription": marker})
			have = marker
		}
	}
	inStep := have == marker
	s.setPending(key, d.Active() && !inStep)
	switch want := d.Active() && inStep; {
	case want && !enabled:
		cmds = append(cmds, Command{"command": "enableClient", "username": key})
	case !want && enabled:
		cmds = append(cmds, Command{"command": "disableClient", "username": key}) // disconnects it
	}
	return cmds
}

// planClient fixes an existing client's client id, text name and roles.
func planClient(key, rolename string, cur *ClientState) []Command {
	var cmds []Command
	if cur.ClientID != key {
		cmds = append(cmds, Command{"command": "setClientId", "username": key, "clientid": key})
	}
	if cur.TextName != DeviceTextName {
		cmds = append(cmds, Command{"command": "modifyClient", "username": key, "textname": DeviceTextName})
	}
	has := false
	for _, r := range cur.Roles {
		if r.Rolename == rolename {
			has = true
			continue
		}
		cmds = append(cmds, Command{"command": "removeClientRole", "username": key, "rolename": r.Rolename})
	}
	if !has {
		cmds = append(cmds, Command{"command": "addClientRole", "username": key, "rolename": rolename})
	}
	return cmds
}

// planRole creates the role with want, or fixes its entries.
func planRole(rolename string, want []ACL, cur *RoleState) []Command {
	if cur == nil {
		return []Command{{"command": "createRole", "rolename": rolename, "acls": want}}
	}
	same := func(a, b ACL) bool { return a.ACLType == b.ACLType && a.Topic == b.Topic && a.Allow == b.Allow }
	var cmds []Command
	for _, a := range cur.ACLs {
		if !slices.ContainsFunc(want, func(w ACL) bool { return same(w, a) }) {
			cmds = append(cmds, Command{"command": "removeRoleACL", "rolename": rolename, "acltype": a.ACLType, "topic": a.Topic})
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(cur.ACLs, func(a ACL) bool { return same(w, a) }) {
			cmds = append(cmds, Command{"command": "addRoleACL", "rolename": rolename, "acltype": w.ACLType, "topic": w.Topic, "allow": w.Allow, "priority": w.Priority})
		}
	}
	return cmds
}
