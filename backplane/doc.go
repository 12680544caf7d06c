// Package backplane connects the nodes of an edgeplane fleet so that they
// behave as one: a message published on any node reaches the recipients on
// every node. fanout subscribes to what its local members need (first local
// member subscribes, last one unsubscribes) and receives through Receiver.
//
// Memory is the single-node backplane (the default). The Redis backplane
// speaks the ASP.NET Core SignalR Redis wire format.
//
//	bp := backplane.NewMemory()
//	bp.Start(router) // router implements Receiver
//	bp.Publish(ctx, &backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
package backplane
