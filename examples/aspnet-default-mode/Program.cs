// A plain ASP.NET Core SignalR app on the Azure SignalR SDK
// (dotnet add package Microsoft.Azure.SignalR). Nothing here knows about
// edgeplane: the connection string in appsettings.json points the SDK at it.
using Microsoft.AspNetCore.SignalR;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddSignalR().AddAzureSignalR(); // reads Azure:SignalR:ConnectionString
var app = builder.Build();
app.MapHub<ChatHub>("/chathub");
app.Run();

public class ChatHub : Hub
{
    public string Echo(string message) => message;

    public Task Broadcast(string message) => Clients.All.SendAsync("news", message);

    public async Task<bool> Join(string group)
    {
        await Groups.AddToGroupAsync(Context.ConnectionId, group); // acked by edgeplane
        return true;
    }

    public Task ToGroup(string group, string message) => Clients.Group(group).SendAsync("news", message);
}
