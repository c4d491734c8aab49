package bootstrap

import (
	"errors"
	"fmt"
	"io"

	"github.com/AlecAivazis/survey/v2"
	"github.com/AlecAivazis/survey/v2/core"
	"github.com/AlecAivazis/survey/v2/terminal"
)

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
