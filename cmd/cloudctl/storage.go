package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/render"
)

func newStorageCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "The storage role's Ceph cluster: its OSD disks"}
	disk := &cobra.Command{Use: "disk", Short: "List the OSD disks, give a storage node another disk, or take one away"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the OSDs: node, disk, up/in, file-backed or disk",
		Args:  exactArgs(0, "cloudctl storage disk list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			osds, err := c.StorageDisks(cmd.Context())
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, osds, func(w io.Writer) error {
				if len(osds) == 0 {
					fmt.Fprintln(w, "No OSD yet.")
					return nil
				}
				t := render.NewTable(w, "OSD", "NODE", "DISK", "UP", "IN", "STATE", "NOTE")
				for _, o := range osds {
					t.Row("osd."+strconv.Itoa(o.ID), o.Node, o.Path, yesNo(o.Up), yesNo(o.In), o.State, o.Note)
				}
				return t.Flush()
			})
		},
	}
	var wipe bool
	add := &cobra.Command{
		Use:   "add NODE PATH",
		Short: "Give a storage node's disk to Ceph (PATH: /dev/..., or loop:SIZE for a file-backed OSD, not for production)",
		Args:  exactArgs(2, "cloudctl storage disk add NODE PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			in := api.StorageDiskAdd{Node: args[0], Path: args[1], Wipe: wipe}
			if err := c.AddStorageDisk(cmd.Context(), in); err != nil {
				return err
			}
			return render.Write(a.out, a.format, in, func(w io.Writer) error {
				fmt.Fprintf(w, "Disk %s of %s given to storage; `cloudctl storage disk list` shows its OSD once made.\n", in.Path, in.Node)
				return nil
			})
		},
	}
	add.Flags().BoolVar(&wipe, "wipe", false, "consent to erasing the signature the disk carries")
	var force bool
	remove := &cobra.Command{
		Use:   "remove NODE PATH",
		Short: "Take a disk's OSD away: marked out, purged once its data moved to the other OSDs",
		Args:  exactArgs(2, "cloudctl storage disk remove NODE PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			o, err := c.RemoveStorageDisk(cmd.Context(), args[0], args[1], force)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, o, func(w io.Writer) error {
				fmt.Fprintf(w, "osd.%d (%s of %s) is draining; it is removed once its data moved (`cloudctl storage disk list`).\n", o.ID, o.Path, o.Node)
				return nil
			})
		},
	}
	remove.Flags().BoolVar(&force, "force", false, "go ahead even when a pool would drop below its size or lose its last copy")
	disk.AddCommand(list, add, remove)
	cmd.AddCommand(disk)
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
