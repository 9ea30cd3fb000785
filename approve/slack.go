package approve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
)

// A slack approver posts the pending approval with Approve and Deny buttons
// to its channel with the bot token (credential). Clicks arrive over Socket
// Mode with the app-level token (app_credential), so no public URL is
// needed. When the step is answered anywhere, or times out, the message is
// rewritten to say how, by whom and where. Everything the agent wrote is
// shown as plain_text, never mrkdwn: no mentions or links can be smuggled in.

const (
	slackApproveAction = "clawpatrol_approve"
	slackDenyAction    = "clawpatrol_deny"
	slackUpdateTimeout = 10 * time.Second
)

// slackApprover is the asker of type slack.
type slackApprover struct {
	a       *Approvals
	name    string
	channel string
	allowed []string
	api     *slack.Client // bot token

	mu     sync.Mutex
	posted map[string]slackMessage // approval id → its message
}

type slackMessage struct {
	channel, ts string
	p           Pending
}

// slackApp is one Socket Mode connection, shared by the approvers that use
// the same app-level token (Slack spreads an app's events over all its
// connections, so one per app is the only way every click is seen).
type slackApp struct {
	a      *Approvals
	client *socketmode.Client
}

func (a *Approvals) slackOptions(token string) []slack.Option {
	opts := []slack.Option{slack.OptionLog(zap.NewStdLog(a.log.Named("slack")))}
	if a.opts.SlackAPIURL != "" {
		opts = append(opts, slack.OptionAPIURL(a.opts.SlackAPIURL))
	}
	if token != "" {
		opts = append(opts, slack.OptionAppLevelToken(token))
	}
	return opts
}

func (a *Approvals) newSlack(name string, c config.Approver, apps map[string]*slackApp) (*slackApprover, error) {
	if c.Channel == "" {
		return nil, errors.New("channel: a channel is needed")
	}
	bot, err := a.secret("credential", c.Credential)
	if err != nil {
		return nil, err
	}
	appToken, err := a.secret("app_credential", c.AppCredential)
	if err != nil {
		return nil, err
	}
	s := &slackApprover{a: a, name: name, channel: c.Channel, allowed: c.AllowedUsers,
		api: slack.New(bot, a.slackOptions("")...), posted: map[string]slackMessage{}}
	if apps[appToken] == nil {
		api := slack.New(bot, a.slackOptions(appToken)...)
		apps[appToken] = &slackApp{a: a, client: socketmode.New(api, socketmode.OptionLog(zap.NewStdLog(a.log.Named("socketmode"))))}
	}
	a.closers = append(a.closers, a.table.subscribe(s.onEvent))
	return s, nil
}

// start connects to Socket Mode and handles clicks until Close.
func (app *slackApp) start() {
	a := app.a
	a.wg.Go(func() {
		if err := app.client.RunContext(a.ctx); !errors.Is(err, context.Canceled) {
			a.log.Error("slack socket mode: approvals over slack will time out", zap.Error(err))
		}
	})
	a.wg.Go(func() {
		for {
			select {
			case <-a.ctx.Done():
				return
			case ev := <-app.client.Events:
				app.handle(ev)
			}
		}
	})
}

// handle takes one Socket Mode event: a button click decides.
func (app *slackApp) handle(ev socketmode.Event) {
	a := app.a
	switch ev.Type {
	case socketmode.EventTypeInvalidAuth, socketmode.EventTypeConnectionError:
		a.log.Warn("slack socket mode", zap.String("event", string(ev.Type)), zap.Any("data", ev.Data))
		return
	case socketmode.EventTypeInteractive:
	default:
		return
	}
	if ev.Request != nil {
		_ = app.client.Ack(*ev.Request) // Slack retries an unacknowledged envelope
	}
	cb, ok := ev.Data.(slack.InteractionCallback)
	if !ok || cb.Type != slack.InteractionTypeBlockActions {
		return
	}
	for _, act := range cb.ActionCallback.BlockActions {
		c := click{User: cb.User.ID, UserName: cb.User.Name, Channel: cb.Channel.ID}
		switch act.ActionID {
		case slackApproveAction:
			c.Verdict = action.Allow
		case slackDenyAction:
			c.Verdict = action.Deny
		default:
			continue
		}
		c.ID, c.Approver, _ = strings.Cut(act.Value, " ")
		_ = a.click(c, true)
	}
}

// click is one press of an Approve or Deny button.
type click struct {
	ID       string         `json:"id"`
	Approver string         `json:"approver"`
	Verdict  action.Verdict `json:"verdict"`
	User     string         `json:"user"`
	UserName string         `json:"user_name,omitempty"`
	Channel  string         `json:"channel"`
}

// click decides an approval for the Slack user who clicked, if the
// approver's allowed_users lets them; everyone else gets a message only
// they can see. Slack hands each click to one of the app's connections,
// which may be another session's: a click for an approval this session
// does not hold is passed on to the sessions of this user that listen on
// approval sockets (forward), and the one holding it decides.
func (a *Approvals) click(c click, forward bool) error {
	ap := a.approvers[c.Approver]
	s, _ := ap.askerSlack()
	if !a.table.holds(c.ID) {
		if forward && a.forwardClick(c) {
			return nil
		}
		if s != nil {
			s.refuse(c, "This approval was already decided.")
		}
		return ErrUnknown
	}
	if s == nil {
		return ErrNotAsked
	}
	if len(s.allowed) > 0 && !slices.Contains(s.allowed, c.User) {
		s.refuse(c, fmt.Sprintf("You are not one of the allowed_users of clawpatrol approver %s: your click did not decide anything.", s.name))
		return nil
	}
	by := c.User
	if c.UserName != "" {
		by = c.UserName + " (" + c.User + ")"
	}
	_, err := a.Resolve(c.ID, Resolution{Verdict: c.Verdict, By: by, Via: ViaSlack, Approver: s.name})
	switch {
	case errors.Is(err, ErrUnknown), errors.Is(err, ErrDecided):
		s.refuse(c, "This approval was already decided.")
	case err != nil:
		s.refuse(c, "This approval is not waiting for "+s.name+" any more.")
	}
	return err
}

// refuse tells the clicking user, and only them, why nothing happened.
func (s *slackApprover) refuse(c click, text string) {
	s.a.spawn(func(ctx context.Context) {
		if _, err := s.api.PostEphemeralContext(ctx, c.Channel, c.User, slack.MsgOptionText(text, true)); err != nil {
			s.a.log.Warn("slack chat.postEphemeral", zap.Error(err))
		}
	})
}

func (ap *approver) askerSlack() (*slackApprover, bool) {
	if ap == nil {
		return nil, false
	}
	s, ok := ap.ask.(*slackApprover)
	return s, ok
}

func (s *slackApprover) ask(ctx context.Context, p Pending) (*Resolution, error) {
	// The post outlives the step's context: if someone denies while it is on
	// its way, the message still gets posted and then updated, rather than
	// left behind with live buttons.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), slackUpdateTimeout)
	defer cancel()
	ch, ts, err := s.api.PostMessageContext(ctx, s.channel,
		slack.MsgOptionText("clawpatrol: approval needed: "+p.Summary, true),
		slack.MsgOptionBlocks(s.blocks(p, nil)...))
	if err != nil {
		return nil, fmt.Errorf("chat.postMessage: %w", err)
	}
	s.mu.Lock()
	s.posted[p.ID] = slackMessage{channel: ch, ts: ts, p: p}
	s.mu.Unlock()
	return nil, nil // the answer comes from a click, through Resolve
}

// onEvent rewrites the message of a step of this approver once it is
// answered, wherever that happened. The step's ask has returned by then,
// so the message, if any, is known.
func (s *slackApprover) onEvent(ev Event) {
	if ev.Kind != EventAnswered || len(ev.Pending.Steps) == 0 {
		return
	}
	st := ev.Pending.Steps[len(ev.Pending.Steps)-1]
	if st.Approver != s.name {
		return
	}
	s.mu.Lock()
	m, ok := s.posted[ev.Pending.ID]
	delete(s.posted, ev.Pending.ID)
	s.mu.Unlock()
	if !ok {
		return
	}
	s.a.spawn(func(ctx context.Context) {
		_, _, _, err := s.api.UpdateMessageContext(ctx, m.channel, m.ts,
			slack.MsgOptionText("clawpatrol: "+account(st, false)+": "+m.p.Summary, true),
			slack.MsgOptionBlocks(s.blocks(m.p, &st)...))
		if err != nil {
			s.a.log.Warn("slack chat.update", zap.String("id", ev.Pending.ID), zap.Error(err))
		}
	})
}

// blocks lays out the message: what, why, until when, and either the
// buttons or (once answered) the outcome.
func (s *slackApprover) blocks(p Pending, answered *action.ApprovalStep) []slack.Block {
	plain := func(t string, n int) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, excerpt(t, n), false, false)
	}
	md := func(t string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, t, false, false)
	}
	var dest string
	if in := p.Input; in != nil {
		dest = fmt.Sprintf("%s:%d", in.Destination.Host, in.Destination.Port)
		if in.Endpoint != "" {
			dest += " (endpoint " + in.Endpoint + ")"
		}
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(md("*clawpatrol: approval needed* (approver "+mrkdwnEscape(s.name)+")"), nil, nil),
		slack.NewSectionBlock(plain(p.Summary, 2900), nil, nil),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			plain("Rule: "+p.Rule, 1900),
			plain("Reason: "+p.Reason, 1900),
			plain("Destination: "+dest, 1900),
			plain("Deadline: "+p.Deadline.Format(time.RFC3339), 1900),
		}, nil),
	}
	if ex := inputExcerpt(p.Input); ex != "" {
		blocks = append(blocks, slack.NewSectionBlock(plain(ex, 2900), nil, nil))
	}
	blocks = append(blocks, slack.NewContextBlock("", plain("id "+p.ID+", session "+p.Session, 1900)))
	if answered != nil {
		return append(blocks, slack.NewSectionBlock(plain(account(*answered, false), 2900), nil, nil))
	}
	value := p.ID + " " + s.name
	return append(blocks, slack.NewActionBlock("clawpatrol_decide",
		slack.NewButtonBlockElement(slackApproveAction, value, plain("Approve", 70)).WithStyle(slack.StylePrimary),
		slack.NewButtonBlockElement(slackDenyAction, value, plain("Deny", 70)).WithStyle(slack.StyleDanger)))
}

// inputExcerpt is the part of the request a person needs to judge it.
func inputExcerpt(a *action.Action) string {
	switch {
	case a == nil:
	case a.HTTP != nil && a.HTTP.Body != "":
		return "Body: " + excerpt(a.HTTP.Body, 1000)
	case a.SQL != nil:
		return "SQL: " + excerpt(a.SQL.Statement, 1000)
	case a.K8s != nil && len(a.K8s.Command) > 0:
		return "Command: " + excerpt(strings.Join(a.K8s.Command, " "), 1000)
	}
	return ""
}

// mrkdwnEscape escapes the three characters Slack's mrkdwn gives meaning.
func mrkdwnEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
