// Package devstage is what a pipeline stage needs to take part in
// `drover dev`: the [Stage] description and the [Endpoints] of the
// embedded stack it runs on. It links none of the embedded fakes (kfake,
// srfake, mochi, gofakes3), so a production stage package can hand
// `drover dev` a stage without linking them; package devstack, which does,
// composes the stages.
package devstage
