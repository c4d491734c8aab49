package main

import "github.com/spf13/cobra"

func newVersionCmd(a *app) *cobra.Command   { return &cobra.Command{Use: "version"} }
func newBootstrapCmd(a *app) *cobra.Command { return &cobra.Command{Use: "bootstrap"} }
func newClusterCmd(a *app) *cobra.Command   { return &cobra.Command{Use: "cluster"} }
func newRoleCmd(a *app) *cobra.Command      { return &cobra.Command{Use: "role"} }
func newStatusCmd(a *app) *cobra.Command    { return &cobra.Command{Use: "status"} }
func userMessage(err error) string          { return err.Error() }
