package policy

import "testing"

func TestLoopbackAddr(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr bool
	}{
		{"127.0.0.1:9464", false},
		{"127.0.0.2:80", false},
		{"[::1]:9464", false},
		{"localhost:9464", false},
		{"0.0.0.0:9464", true},
		{"[::]:9464", true},
		{"192.0.2.1:9464", true},
		{":9464", true},
		{"example.com:9464", true},
		{"9464", true},
		{"127.0.0.1:http", true},
		{"127.0.0.1:70000", true},
	}
	for _, tt := range tests {
		if err := loopbackAddr(tt.addr); (err != nil) != tt.wantErr {
			t.Errorf("loopbackAddr(%q): got %v, want error %v", tt.addr, err, tt.wantErr)
		}
	}
}
