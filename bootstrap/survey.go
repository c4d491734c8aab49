package bootstrap

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/AlecAivazis/survey/v2"
	"github.com/AlecAivazis/survey/v2/core"
	"github.com/AlecAivazis/survey/v2/terminal"
)

// TypeAhead wraps a terminal's input for SurveyAsker so that no key typed
// (or pasted) ahead of a prompt is lost. survey reads through short-lived
// buffered readers (one per prompt, one per cursor-position query) and drops
// whatever they read beyond what they needed: keys that arrived together with
// a cursor-position report, or after the Enter that ended a prompt,
// vanished. Each Read of the wrapper returns input up to the end of a line
// ('\r', '\n') or of a cursor-position report ('R'); the rest waits in the
// wrapper for the next Read. Use one wrapper for all the prompts of a run.
func TypeAhead(in terminal.FileReader) terminal.FileReader {
	return &typeAheadReader{in: in}
}

type typeAheadReader struct {
	in      terminal.FileReader
	pending []byte
	buf     [256]byte
}

func (r *typeAheadReader) Fd() uintptr { return r.in.Fd() }

func (r *typeAheadReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.pending) == 0 {
		n, err := r.in.Read(r.buf[:])
		if n == 0 {
			return 0, err
		}
		r.pending = append(r.pending[:0], r.buf[:n]...)
	}
	end := len(r.pending)
	if i := bytes.IndexAny(r.pending, "\r\nR"); i >= 0 {
		end = i + 1
	}
	n := copy(p, r.pending[:end])
	r.pending = r.pending[n:]
	return n, nil
}

// SurveyAsker asks on a terminal with github.com/AlecAivazis/survey/v2.
// Out should be the terminal the person looks at (stderr, so that stdout
// stays for results such as a dry run's preseed).
type SurveyAsker struct {
	In  terminal.FileReader
	Out terminal.FileWriter
}

func (s SurveyAsker) opts(extra ...survey.AskOpt) []survey.AskOpt {
	return append([]survey.AskOpt{survey.WithStdio(s.In, s.Out, s.Out)}, extra...)
}

func surveyErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, terminal.InterruptErr), errors.Is(err, io.EOF):
		return ErrCancelled
	}
	return fmt.Errorf("prompt: %w", err)
}

// Say implements Asker.
func (s SurveyAsker) Say(text string) error {
	_, err := fmt.Fprintln(s.Out, text)
	return err
}

// Input implements Asker.
func (s SurveyAsker) Input(q Question) (string, error) {
	var ans string
	var extra []survey.AskOpt
	if q.Validate != nil {
		extra = append(extra, survey.WithValidator(func(v any) error {
			str, _ := v.(string)
			if str == "" && q.Default != "" {
				str = q.Default
			}
			return q.Validate(str)
		}))
	}
	err := survey.AskOne(&survey.Input{Message: q.Message, Default: q.Default, Help: q.Help}, &ans, s.opts(extra...)...)
	return ans, surveyErr(err)
}

// Select implements Asker.
func (s SurveyAsker) Select(q Question, options []Option) (string, error) {
	values, describe := optionValues(options)
	p := &survey.Select{Message: q.Message, Options: values, Help: q.Help, Description: describe}
	for _, v := range values {
		if v == q.Default {
			p.Default = q.Default
		}
	}
	var ans string
	err := survey.AskOne(p, &ans, s.opts()...)
	return ans, surveyErr(err)
}

// MultiSelect implements Asker.
func (s SurveyAsker) MultiSelect(q Question, options []Option, defaults []string, validate func([]string) error) ([]string, error) {
	values, describe := optionValues(options)
	p := &survey.MultiSelect{Message: q.Message, Options: values, Help: q.Help, Description: describe}
	if len(defaults) > 0 {
		p.Default = defaults
	}
	var extra []survey.AskOpt
	if validate != nil {
		extra = append(extra, survey.WithValidator(func(v any) error {
			var sel []string
			if oas, ok := v.([]core.OptionAnswer); ok {
				for _, oa := range oas {
					sel = append(sel, oa.Value)
				}
			}
			return validate(sel)
		}))
	}
	var ans []string
	err := survey.AskOne(p, &ans, s.opts(extra...)...)
	return ans, surveyErr(err)
}

// Confirm implements Asker.
func (s SurveyAsker) Confirm(q Question, def bool) (bool, error) {
	var ans bool
	err := survey.AskOne(&survey.Confirm{Message: q.Message, Default: def, Help: q.Help}, &ans, s.opts()...)
	return ans, surveyErr(err)
}

func optionValues(options []Option) ([]string, func(string, int) string) {
	values := make([]string, len(options))
	for i, o := range options {
		values[i] = o.Value
	}
	return values, func(_ string, i int) string {
		if i >= 0 && i < len(options) {
			return options[i].Description
		}
		return ""
	}
}
